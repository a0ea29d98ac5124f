"""helo's DNS policies (rfc: no_forward_dns, no_reverse_dns; strict: no_matching_dns)
against the real nsd (example.test, dnscheck.test, 127.in-addr.arpa)."""

import time

import pytest

from dnsproxy import DNSProxy
from harness import service_env


def helo(session_server, name, ip, line="helo policy rfc", files=None):
    server = session_server(line, files={"loglevel": "6", "badhelo": "", **(files or {})})
    d = server.talk(f"HELO {name}", "QUIT", remote_ip=ip)
    return d


@pytest.mark.parametrize("name, ip, reply", [
    ("host2.example.test", "127.0.0.2", None),
    ("elsewhere.dnscheck.test", "127.0.0.2", None),          # resolves; rfc needs no match
    ("nx.dnscheck.test", "127.0.0.2", "HELO hostname does not exist"),
    ("noaddr.dnscheck.test", "127.0.0.2", "HELO hostname did not resolve"),
    ("host2.example.test", "127.0.0.4", "no rDNS for 127.0.0.4"),
    ("[127.0.0.2]", "127.0.0.2", None),                      # a literal: no forward check
    ("[127.0.0.4]", "127.0.0.4", "no rDNS for 127.0.0.4"),   # the client still needs a PTR
])
def test_rfc_policy(session_server, name, ip, reply):
    d = helo(session_server, name, ip)
    if reply is None:
        assert d.codes[1] == 250, d.pairs
    else:
        assert d.pairs[1] == (550, reply)
        assert d.channel.closed                   # helo's default reject_type disconnect


@pytest.mark.parametrize("name, ip, code, notes", [
    ("host2.example.test", "127.0.0.2", 250, ("helo_forward_match", "helo_reverse_match")),
    ("nomatch.example.test", "127.0.0.2", 250, ("helo_forward_match", "helo_reverse_match")),
    ("other.example.test", "127.0.0.6", 550, ()),     # does not exist: no_forward_dns first
    ("elsewhere.dnscheck.test", "127.0.0.2", 550, ()),
    ("elsewhere.dnscheck.test", "127.0.0.6", 250, ("helo_reverse_match",)),   # same domain
])
def test_strict_policy_matching_dns(session_server, name, ip, code, notes):
    d = helo(session_server, name, ip, line="helo policy strict")
    assert d.codes[1] == code, d.pairs
    for note in notes:
        assert d.connection.notes.get(note) == 1
    if (name, ip) == ("elsewhere.dnscheck.test", "127.0.0.2"):
        assert d.pairs[1] == (550, "That HELO hostname fails FCrDNS")


def test_perfect_match_earns_karma(session_server):
    d = helo(session_server, "host2.example.test", "127.0.0.2", line="helo policy strict")
    assert d.connection.notes["karma"] == 1


def test_dns_failure_never_refuses(session_server):
    # nsd does not serve .invalid or 192.0.2.0/24's reverse zone: server failures
    d = helo(session_server, "client.example.invalid", "192.0.2.10", line="helo policy strict")
    assert d.codes[1] == 250
    assert "skip no_forward_dns, lookup failed" in d.log
    assert "skip no_reverse_dns, lookup failed" in d.log


def test_dns_that_never_answers_is_bounded(session_server):
    with DNSProxy(("127.0.0.1", int(service_env("QPT_DNS_PORT"))), answer=False) as proxy:
        start = time.monotonic()
        d = helo(session_server, "host2.example.test", "127.0.0.2", line="helo policy strict",
                 files={"dns_servers": f"127.0.0.1:{proxy.port}", "dns_timeout": "1.5"})
        elapsed = time.monotonic() - start
    assert d.codes[1] == 250
    assert elapsed < 2.6, elapsed     # one dns_timeout (1.5 s), not two


def test_ptr_is_shared_and_a_aaaa_asked_together(session_server):
    # the engine's PTR lookup answers before the greeting (one round trip); at HELO the
    # A and AAAA lookups run together (one more), and helo reuses the PTR answer
    with DNSProxy(("127.0.0.1", int(service_env("QPT_DNS_PORT"))), delay=0.4) as proxy:
        server = session_server("helo policy strict", files={
            "badhelo": "", "dns_servers": f"127.0.0.1:{proxy.port}"}, rdns=True)
        start = time.monotonic()
        d = server.talk("HELO host2.example.test", "QUIT", remote_ip="127.0.0.2")
        elapsed = time.monotonic() - start
        assert d.codes[1] == 250
        assert sorted(proxy.queries) == [("2.0.0.127.in-addr.arpa", "PTR"),
                                         ("host2.example.test", "A"), ("host2.example.test", "AAAA")]
    assert 0.8 <= elapsed < 1.35, elapsed         # two round trips; one by one: four (1.6 s)
