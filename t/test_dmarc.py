"""dmarc against the test nsd (auth.test policies, nopolicy.test without one): SPF and
DKIM alignment (relaxed and strict), organizational-domain fallback with sp=, pct,
reject / quarantine / none, broken records and From headers, one Authentication-Results
header with spf, dkim and dmarc, a dead DNS server, sender_permitted_from's
no_dmarc_policy."""

import time

import dkim
import pytest

from authtools import auth_results, header_values, read_key, reply, results_of
from dnsfault import DNSRelay
from inproc import message_wire

CHAIN = ("sender_permitted_from reject 0", "dkim reject 0")


def message(from_addr, subject="dmarc", extra=""):
    return (f"From: {from_addr}\nTo: u@example.test\nSubject: {subject}\n{extra}"
            f"Message-ID: <x@auth.test>\n\nbody\n").replace("\n", "\r\n").encode()


def sign(raw, domain=b"auth.test"):
    return dkim.sign(raw, b"s1", domain, read_key("auth-s1.private")) + raw


def wire(raw):
    return message_wire(raw.decode().replace("\r\n", "\n").rstrip("\n"))


@pytest.fixture
def server(session_server):
    def make(line="dmarc", chain=CHAIN, files=None):
        return session_server(*chain, line, files={"loglevel": "6", **(files or {})})
    return make


def send(srv, mail_from, raw, **talk):
    return srv.talk("EHLO client.auth.test", f"MAIL FROM:<{mail_from}>", "RCPT TO:<u@example.test>",
                    "DATA", wire(raw), "QUIT", **talk)


def dmarc_of(d):
    (r,) = results_of(d.messages[0], "dmarc")
    return r.result, next(p.value for p in r.properties if (p.type, p.name) == ("header", "from"))


def ar_text(d):
    (value,) = header_values(d.messages[0], "Authentication-Results")
    return value


@pytest.mark.parametrize("mail_from, from_addr, signed, expect", [
    # SPF pass for pass.auth.test, aligned with auth.test by organizational domain
    ("a@pass.auth.test", "a@auth.test", False, "pass"),
    # SPF passes for another organization: not aligned; no DKIM -> fail, p=reject
    ("a@nopolicy.test", "a@auth.test", False, "reject"),
    # ... but a DKIM signature d=auth.test aligns
    ("a@nopolicy.test", "a@auth.test", True, "pass"),
    ("a@nopolicy.test", "a@mail.auth.test", True, "pass"),          # relaxed DKIM alignment
    # strict policies: the same name only
    ("a@pass.auth.test", "a@strict.auth.test", False, "reject"),
    ("a@strict.auth.test", "a@strict.auth.test", False, "pass"),
    ("a@nopolicy.test", "a@strict.auth.test", True, "reject"),       # d=auth.test != strict.auth.test
    # p=none: recorded only
    ("a@nopolicy.test", "a@none.auth.test", False, "accept"),
])
def test_alignment_and_policy(server, mail_from, from_addr, signed, expect):
    raw = message(from_addr)
    d = send(server(), mail_from, sign(raw) if signed else raw)
    if expect == "reject":
        assert reply(d, 5) == (552, "failed DMARC policy")
        assert "karma -3" in d.log
        assert "fail, " in d.log and "not aligned, policy reject" in d.log
    else:
        assert d.codes[-2] == 250, d.pairs
        assert dmarc_of(d) == ("pass" if expect == "pass" else "fail", from_addr.split("@")[1])


def test_subdomain_falls_back_to_the_organizational_domain_and_its_sp(server):
    raw = message("a@deep.sub.auth.test")
    d = send(server(), "a@nopolicy.test", raw)
    assert reply(d, 5) == (552, "failed DMARC policy")          # sp=quarantine, quarantine reject
    d = send(server("dmarc quarantine header"), "a@nopolicy.test", raw)
    assert d.codes[-2] == 250
    assert header_values(d.messages[0], "X-DMARC-Quarantine") == ["deep.sub.auth.test (p=quarantine)"]
    assert "dmarc=fail (p=reject sp=quarantine dis=quarantine) header.from=deep.sub.auth.test" in ar_text(d)
    d = send(server("dmarc quarantine accept"), "a@nopolicy.test", raw)
    assert d.codes[-2] == 250 and header_values(d.messages[0], "X-DMARC-Quarantine") == []


def test_a_record_without_v_falls_back_but_a_bad_p_does_not(server):
    d = send(server("dmarc quarantine accept"), "a@nopolicy.test", message("a@nov.auth.test"))
    assert "dis=quarantine" in ar_text(d)                         # the org policy's sp
    d = send(server(), "a@nopolicy.test", message("a@bogus.auth.test"))
    assert d.codes[-2] == 250 and dmarc_of(d) == ("none", "bogus.auth.test")
    d = send(server(), "a@nopolicy.test", message("a@twice.auth.test"))
    assert d.codes[-2] == 250 and dmarc_of(d) == ("none", "twice.auth.test")


def test_pct_zero_applies_the_next_milder_policy(server):
    d = send(server("dmarc quarantine header"), "a@nopolicy.test", message("a@pct0.auth.test"))
    assert d.codes[-2] == 250
    assert header_values(d.messages[0], "X-DMARC-Quarantine") == ["pct0.auth.test (p=quarantine)"]
    assert "pct=0: reject sampled out, quarantine instead" in d.log


def test_no_policy_and_spf_no_dmarc_policy(server):
    d = send(server(), "a@hard.nopolicy.test", message("a@nopolicy.test"))
    assert d.codes[-2] == 250 and dmarc_of(d) == ("none", "nopolicy.test")
    d = send(server(chain=("sender_permitted_from reject 1 no_dmarc_policy 1", "dkim reject 0")),
             "a@hard.nopolicy.test", message("a@nopolicy.test"))
    code, text = reply(d, 5)
    assert code == 552 and text.startswith("SPF - fail: domain of hard.nopolicy.test does not designate")
    # with a policy published, no_dmarc_policy stays out of it (DMARC passes here by DKIM)
    d = send(server(chain=("sender_permitted_from reject 1 no_dmarc_policy 4", "dkim reject 0")),
             "a@hard.nopolicy.test", sign(message("a@auth.test")))
    assert d.codes[-2] == 250


@pytest.mark.parametrize("headers, text", [
    ("Subject: no from\n", "empty from address, null sender?"),
    ("From: a@auth.test\nFrom: b@auth.test\n", "unparseable from header"),
    ("From: undisclosed-recipients:;\n", "unparseable from header"),
    ("From: a@auth.test, b@nopolicy.test\n", "unparseable from header"),
])
def test_missing_or_unreadable_from(server, headers, text):
    raw = (headers + "To: u@example.test\n\nbody\n").replace("\n", "\r\n").encode()
    d = send(server(), "a@pass.auth.test", raw)
    assert reply(d, 5) == (552, text)


def test_one_authentication_results_with_every_method_per_message(server):
    srv = server()
    d = srv.talk("EHLO client.auth.test",
                 "MAIL FROM:<a@pass.auth.test>", "RCPT TO:<u@example.test>", "DATA",
                 wire(sign(message("a@auth.test"))),
                 "MAIL FROM:<a@none.auth.test>", "RCPT TO:<u@example.test>", "DATA",
                 wire(message("a@none.auth.test")), "QUIT")
    first, second = d.messages
    for msg in (first, second):
        assert len(header_values(msg, "Authentication-Results")) == 1
    assert [(r.method, r.result) for r in auth_results(first)[0].results] == [
        ("auth", "none"), ("spf", "pass"), ("dkim", "pass"), ("dmarc", "pass")]
    assert [(r.method, r.result) for r in auth_results(second)[0].results] == [
        ("auth", "none"), ("spf", "none"), ("dkim", "none"), ("dmarc", "fail")]


def test_dns_never_answering_defers_within_the_timeout(server):
    with DNSRelay(silent=True) as relay:
        srv = server(chain=("dkim reject 0",), files={"dns_servers": relay.address, "dns_timeout": "1"})
        start = time.monotonic()
        d = send(srv, "a@pass.auth.test", message("a@auth.test"))
        elapsed = time.monotonic() - start
    assert reply(d, 5) == (452, "DMARC policy lookup failed, try again later")
    assert elapsed < 3, elapsed
    with DNSRelay(silent=True) as relay:
        srv = server("dmarc reject 0", chain=(), files={"dns_servers": relay.address, "dns_timeout": "1"})
        d = send(srv, "a@pass.auth.test", message("a@auth.test"))
    assert d.codes[-2] == 250 and dmarc_of(d) == ("temperror", "auth.test")


def test_relay_clients_and_whitelisted_hosts(server):
    d = send(server(), "a@nopolicy.test", message("a@auth.test"), relay_client=True)
    assert d.codes[-2] == 250 and results_of(d.messages[0], "dmarc") == []
    srv = server(chain=("t_note whitelisthost 1",) + CHAIN)
    d = send(srv, "a@nopolicy.test", message("a@auth.test"))
    assert d.codes[-2] == 250 and dmarc_of(d) == ("fail", "auth.test")


def test_a_public_suffix_list_file(server, tmp_path):
    """With auth.test listed as a public suffix, sub.auth.test is an organizational
    domain of its own (without a policy), so auth.test's sp= no longer applies."""
    psl = tmp_path / "psl.dat"
    psl.write_text("// test list\ntest\nauth.test\n")
    d = send(server(f"dmarc public_suffix_list {psl}"), "a@nopolicy.test", message("a@deep.sub.auth.test"))
    assert d.codes[-2] == 250 and dmarc_of(d) == ("none", "deep.sub.auth.test")


def test_organizational_domains_of_the_shipped_list():
    from qpsmtpd_py.api import organizational_domain
    assert organizational_domain("mail.example.co.uk") == "example.co.uk"
    assert organizational_domain("a.b.example.com") == "example.com"
    assert organizational_domain("deep.sub.auth.test") == "auth.test"
    assert organizational_domain("co.uk") == "co.uk"


test_organizational_domains_of_the_shipped_list = pytest.mark.no_services(
    test_organizational_domains_of_the_shipped_list)


def test_spf_deny_the_old_plugin(server):
    chain = ("sender_permitted_from reject 1",)
    d = send(server("spf_deny", chain=chain + ("dmarc",)), "a@hard.nopolicy.test", message("a@nopolicy.test"))
    code, text = reply(d, 5)
    assert code == 552 and text.startswith("SPF - fail: domain of hard.nopolicy.test")
    d = send(server("spf_deny", chain=chain + ("dmarc",)), "a@soft.nopolicy.test", message("a@nopolicy.test"))
    assert d.codes[-2] == 250
    # a domain with a policy: dmarc decides, spf_deny stays out (DKIM aligns: pass)
    d = send(server("spf_deny", chain=chain + ("dkim reject 0", "dmarc")), "a@hard.nopolicy.test",
             sign(message("a@auth.test")))
    assert d.codes[-2] == 250


def test_qpsmtpds_sample_lines_in_a_real_server_process(mail_config):
    """qpsmtpd's config.sample/plugins lines, in the `qpsmtpd` program on a socket."""
    srv = mail_config("sender_permitted_from reject 1", "dkim reject 0", "dmarc")
    raw = sign(message("a@auth.test", subject="real"))
    body = raw.decode().replace("\r\n", "\n").rstrip("\n")
    with srv.session(env={"TCPREMOTEIP": "192.0.2.10"}) as c:
        assert c.send_message("a@pass.auth.test", ["u@example.test"], body)[0] == 250
    with srv.session(env={"TCPREMOTEIP": "192.0.2.10"}) as c:
        code, text = c.send_message("a@nopolicy.test", ["u@example.test"],
                                    message("a@auth.test").decode().replace("\r\n", "\n"))
        assert (code, text.split(" ", 1)[1]) == (552, "failed DMARC policy"), text
    (msg,) = srv.messages()
    head = msg.split(b"\n\n", 1)[0].decode()
    assert head.count("Authentication-Results:") == 1
    assert "spf=pass smtp.mailfrom=pass.auth.test" in head
    assert "dkim=pass (1024-bit key) header.d=auth.test" in head
    assert "dmarc=pass (p=reject sp=quarantine dis=none) header.from=auth.test" in head
