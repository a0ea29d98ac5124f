"""uribl: finding hosts in MIME messages (unit), and the plugin against the real nsd
(zone uribl.test: spam-site.test, evil.co.uk, whitelisted.test and 127.0.0.2 listed
with 127.0.0.2, only4.test with 127.0.0.4)."""

import base64
import importlib.util
import os
import quopri
import time

import pytest

from dnsproxy import DNSProxy
from harness import service_env

PLUGIN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "plugins",
                      "uribl.py")


@pytest.fixture(scope="module")
def uribl():
    spec = importlib.util.spec_from_file_location("uribl_t", PLUGIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- finding hosts (no DNS) -------------------------------------------------------------------
@pytest.mark.no_services
@pytest.mark.parametrize("text, names, ips", [
    ("see http://a.b.spam-site.test/x?y=1 now", ["a.b.spam-site.test"], []),
    ("HTTPS://User@Example.XYZ:8080/", ["example.xyz"], []),
    ("visit www.shop.online today", ["www.shop.online"], []),
    ("plain example.com and file.txt and readme.test", ["example.com"], []),
    ("http://127.0.0.2/x http://0x7f.0.0.02/ http://2130706434/", [], ["127.0.0.2"] * 3),
    ("http://spam%2dsite%2etest/ and http://evil&#46;co&#46;uk/", ["spam-site.test", "evil.co.uk"], []),
    ("mail me at user@example.com", [], []),
])
def test_hosts_in_text(uribl, text, names, ips):
    found_names, found_ips = uribl.hosts_in(text)
    assert found_names == names
    assert sorted(found_ips) == sorted(ips)


@pytest.mark.no_services
def test_lookup_names_stop_at_the_registered_domain(uribl):
    assert uribl.lookup_names("a.b.spam-site.test") == ["a.b.spam-site.test", "b.spam-site.test",
                                                        "spam-site.test"]
    assert uribl.lookup_names("www.evil.co.uk") == ["www.evil.co.uk", "evil.co.uk"]
    assert uribl.lookup_names("test") == []


def mime_message(parts):
    """A multipart/mixed message (LF line ends) with (content-type, cte, text) parts."""
    out = ["From: a@example.test", "Subject: links", "MIME-Version: 1.0",
           'Content-Type: multipart/mixed; boundary="XX"', ""]
    for ctype, cte, text in parts:
        data = text.encode("utf-8")
        if cte == "base64":
            body = base64.encodebytes(data).decode()
        elif cte == "quoted-printable":
            body = quopri.encodestring(data).decode()
        else:
            body = text
        out += ["--XX", f"Content-Type: {ctype}; charset=utf-8", f"Content-Transfer-Encoding: {cte}",
                "", body]
    out += ["--XX--", ""]
    return "\n".join(out)


@pytest.mark.no_services
def test_every_text_part_is_decoded(uribl):
    long_line = "x" * 70 + " http://qp-site.test/" + "y" * 30     # soft line breaks in QP
    raw = mime_message([("text/plain", "7bit", "http://plain-site.test/"),
                        ("text/html", "base64", '<a href="http://b64-site.test/">x</a>'),
                        ("text/plain", "quoted-printable", long_line),
                        ("image/png", "base64", "http://not-text.test/")]).encode()
    names = [n for text in uribl.message_texts(raw) for n in uribl.hosts_in(text)[0]]
    assert names == ["plain-site.test", "b64-site.test", "qp-site.test"]


# -- the plugin against nsd ---------------------------------------------------------------------
def deliver(session_server, body, line="uribl", zones=("uribl.test",), files=None):
    server = session_server(line, files={"uribl_zones": "\n".join(zones), "loglevel": "6",
                                         **(files or {})})
    wire = (body.replace("\n", "\r\n") + "\r\n.\r\n").encode()
    return server.talk("HELO client.example.test", "MAIL FROM:<a@example.test>",
                       "RCPT TO:<u@example.test>", "DATA", wire, "QUIT", remote_ip="192.0.2.10")


def test_listed_host_adds_a_header(session_server):
    d = deliver(session_server, "Subject: x\n\nBuy at http://www.spam-site.test/now\n")
    assert d.codes[5] == 250
    assert "X-URIBL-Match: spam-site.test in uribl.test: spam-site.test is listed in uribl.test" \
        in d.messages[0]["header"]


def test_deny_and_denysoft(session_server):
    body = mime_message([("text/html", "base64", '<a href="http://spam-site.test/">buy</a>')])
    d = deliver(session_server, body, line="uribl action deny")
    assert d.pairs[5] == (552, "spam-site.test in uribl.test: spam-site.test is listed in uribl.test")
    d = deliver(session_server, body, zones=("uribl.test -1 denysoft",))
    assert d.pairs[5][0] == 452


def test_masks_ip_and_two_level_cctld(session_server):
    body = "Subject: x\n\nhttp://only4.test/ http://127.0.0.2/ http://www.evil.co.uk/\n"
    d = deliver(session_server, body, zones=("uribl.test 2,8 deny",))
    assert d.pairs[5] == (552, "2.0.0.127 in uribl.test: 127.0.0.2 is listed in uribl.test")
    d = deliver(session_server, "Subject: x\n\nhttp://only4.test/ http://www.evil.co.uk/\n",
                zones=("uribl.test 2,8 deny",))
    assert d.pairs[5] == (552, "evil.co.uk in uribl.test: 127.0.0.2")
    d = deliver(session_server, "Subject: x\n\nhttp://only4.test/\n", zones=("uribl.test 4 deny",))
    assert d.pairs[5][0] == 552
    d = deliver(session_server, "Subject: x\n\nhttp://127.0.0.2/\n", line="uribl checkip no",
                zones=("uribl.test 2 deny",))
    assert d.codes[5] == 250


def test_whitelisted_domains_are_not_looked_up(session_server):
    d = deliver(session_server, "Subject: x\n\nhttp://a.whitelisted.test/\n", line="uribl action deny",
                files={"uribl_whitelist_domains": "whitelisted.test"})
    assert d.codes[5] == 250
    d = deliver(session_server, "Subject: x\n\nhttp://a.whitelisted.test/\n", line="uribl action deny",
                files={"uribl_whitelist_domains": ""})
    assert d.codes[5] == 552


def test_headers_only_with_check_headers(session_server):
    body = "Subject: x\nX-Link: http://spam-site.test/\n\nclean\n"
    assert deliver(session_server, body, line="uribl action deny").codes[5] == 250
    assert deliver(session_server, body, line="uribl action deny check-headers 1").codes[5] == 552
    assert deliver(session_server, body, line="uribl action deny scan-headers 1").codes[5] == 552


def test_bad_zone_lines_are_skipped(session_server):
    d = deliver(session_server, "Subject: x\n\nhttp://spam-site.test/\n",
                zones=("uribl.test 2x deny", "uribl.test 2 explode", "uribl.test 2 deny"))
    assert d.codes[5] == 552
    assert "malformed mask '2x'" in d.log and "unknown action 'explode'" in d.log


def test_work_per_message_is_bounded(session_server):
    hosts = " ".join(f"http://h{i}.example{i}.test/" for i in range(500))
    with DNSProxy(("127.0.0.1", int(service_env("QPT_DNS_PORT")))) as proxy:
        d = deliver(session_server, f"Subject: x\n\n{hosts} http://spam-site.test/\n",
                    line="uribl max_hosts 20", files={"dns_servers": f"127.0.0.1:{proxy.port}"})
        assert d.codes[5] == 250                 # the listed host came after the bound
        assert proxy.count() == 20
    assert "skip, more than 20 names" in d.log


def test_dns_that_never_answers_does_not_refuse(session_server):
    with DNSProxy(("127.0.0.1", int(service_env("QPT_DNS_PORT"))), answer=False) as proxy:
        start = time.monotonic()
        d = deliver(session_server, "Subject: x\n\nhttp://spam-site.test/ http://a.b.c.test/\n",
                    line="uribl action deny",
                    files={"dns_servers": f"127.0.0.1:{proxy.port}", "dns_timeout": "1.5"})
        elapsed = time.monotonic() - start
    assert d.codes[5] == 250
    assert elapsed < 2.6, elapsed     # one dns_timeout (1.5 s), not two
    assert "lookups failed; not counted as listed" in d.log
