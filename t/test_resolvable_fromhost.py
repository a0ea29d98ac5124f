"""resolvable_fromhost / require_resolvable_fromhost and check_dns_user against the
real nsd (example.test and dnscheck.test of t/services/start-services.sh)."""

import time

import pytest

from dnsproxy import DNSProxy
from harness import service_env

FQDN = "FQDN required in the envelope sender"


def mail(session_server, sender, line="resolvable_fromhost", files=None, **kw):
    server = session_server(line, files={"loglevel": "6", **(files or {})})
    d = server.talk("HELO client.example.test", f"MAIL FROM:<{sender}>", "QUIT", **kw)
    return d


@pytest.mark.parametrize("sender, note", [
    ("a@example.test", "mx"),                  # MX mx.example.test -> 127.0.0.1
    ("a@nomx.example.test", "a"),              # no MX, A record
    ("a@aonly.dnscheck.test", "a"),
    ("a@aaaaonly.dnscheck.test", "a"),         # an AAAA record only
    ("a@privmx.dnscheck.test", "mx"),          # no invalid_resolvable_fromhost: all valid
    ("a@[192.0.2.1]", "ip"),
])
def test_senders_that_pass(session_server, sender, note):
    d = mail(session_server, sender)
    assert d.codes[2] == 250, d.pairs
    assert f"pass," in d.log


@pytest.mark.parametrize("sender, note", [
    ("a@nx.dnscheck.test", "no MX or address for nx.dnscheck.test"),
    ("a@noaddr.dnscheck.test", "no MX or address for noaddr.dnscheck.test"),
    ("a@badmx.dnscheck.test", "invalid MX for badmx.dnscheck.test"),
    ("a@privmx.dnscheck.test", "invalid MX for privmx.dnscheck.test"),
    ("a@localhost", "not a FQDN"),
])
def test_senders_that_fail(session_server, sender, note):
    d = mail(session_server, sender, files={"invalid_resolvable_fromhost": "192.168.0.0/16"})
    assert d.pairs[2] == (450, f"{FQDN} (#4.1.8)")
    assert f"fail ({note})" in d.log


def test_one_good_mx_is_enough(session_server):
    d = mail(session_server, "a@mixmx.dnscheck.test",
             files={"invalid_resolvable_fromhost": "192.168.0.0/16\n10.0.0.0/8 bad-line"})
    assert d.codes[2] == 250
    assert "'bad-line' is not a network" in d.log


def test_invalid_a_record_fails_and_ipv6_networks(session_server):
    d = mail(session_server, "a@aonly.dnscheck.test",
             files={"invalid_resolvable_fromhost": "127.0.0.9"})
    assert d.codes[2] == 450
    d = mail(session_server, "a@aaaaonly.dnscheck.test",
             files={"invalid_resolvable_fromhost": "2001:db8::/32"})
    assert d.codes[2] == 450


def test_null_mx_is_refused_for_good(session_server):
    d = mail(session_server, "a@nullmx.dnscheck.test")
    assert d.pairs[2] == (550, "Sender address has null MX (#5.7.27)")
    d = mail(session_server, "a@nullmx.dnscheck.test", line="resolvable_fromhost reject_type temp")
    assert d.pairs[2] == (450, "Sender address has null MX (#4.7.27)")


def test_reject_type_perm_and_reject_0(session_server):
    d = mail(session_server, "a@nx.dnscheck.test", line="resolvable_fromhost reject_type perm")
    assert d.pairs[2] == (550, f"{FQDN} (#5.1.8)")
    d = mail(session_server, "a@nx.dnscheck.test", line="resolvable_fromhost reject 0")
    assert d.codes[2] == 250
    assert "fail, tolerated" in d.log


def test_debian_name_is_the_same_plugin(session_server):
    d = mail(session_server, "a@nx.dnscheck.test", line="require_resolvable_fromhost")
    assert d.pairs[2] == (450, f"{FQDN} (#4.1.8)")
    assert mail(session_server, "a@example.test", line="require_resolvable_fromhost").codes[2] == 250


def test_null_sender_and_relay_clients_pass(session_server):
    assert mail(session_server, "").codes[2] == 250
    assert mail(session_server, "a@nx.dnscheck.test", relay_client=True).codes[2] == 250


def test_dns_failure_is_temporary_whatever_reject_type(session_server):
    # nsd does not serve .invalid: a server failure (REFUSED), not "no such domain"
    d = mail(session_server, "a@x.invalid", line="resolvable_fromhost reject_type perm")
    assert d.pairs[2] == (450, "Temporary address resolution failure (#4.4.3)")


def test_dns_that_never_answers_costs_dns_timeout(session_server):
    with DNSProxy(("127.0.0.1", int(service_env("QPT_DNS_PORT"))), answer=False) as proxy:
        start = time.monotonic()
        server = session_server("resolvable_fromhost", files={
            "dns_servers": f"127.0.0.1:{proxy.port}", "dns_timeout": "1.5"})
        d = server.talk("HELO client.example.test", *["MAIL FROM:<a@example.test>", "RSET"] * 5,
                        "QUIT")
        elapsed = time.monotonic() - start
    assert d.codes[2] == 450
    assert d.pairs[2][1] == "Temporary address resolution failure (#4.4.3)"
    assert elapsed < 2.6, elapsed     # one dns_timeout (1.5 s) per session, not one per MAIL


# -- check_dns_user -----------------------------------------------------------------------
def rcpt(session_server, *rcpts, line="check_dns_user users.dnscheck.test", files=None):
    server = session_server(line, files={"loglevel": "6",
                                         "rcpthosts": "example.test\ncatchall.test\nother.test",
                                         **(files or {})})
    d = server.talk("HELO client.example.test", "MAIL FROM:<a@example.test>",
                    *(f"RCPT TO:<{r}>" for r in rcpts), "QUIT")
    return d.pairs[3:3 + len(rcpts)]


def test_check_dns_user_listed_catch_all_and_missing(session_server):
    replies = rcpt(session_server, "alice@example.test", "ALICE@Example.Test", "bob@example.test",
                   "anyone@catchall.test", "x@other.test", "x@foreign.test", "a b@example.test")
    assert [code for code, _ in replies] == [250, 250, 550, 250, 250, 550, 550]
    assert replies[2][1] == replies[6][1] == "Sorry, no mailbox here by that name. (#5.1.1)"
    assert replies[5][1] != replies[2][1]        # another domain: rcpt_ok's relaying refusal


def test_check_dns_user_domains_argument(session_server):
    replies = rcpt(session_server, "bob@example.test", "bob@catchall.test",
                   line="check_dns_user users.dnscheck.test domains catchall.test")
    assert [code for code, _ in replies] == [250, 250]


def test_check_dns_user_dns_failure_is_temporary(session_server):
    replies = rcpt(session_server, "bob@example.test", line="check_dns_user users.not-served.invalid")
    assert replies == [(450, "Temporary failure looking up the recipient, try again later (#4.4.3)")]


def test_check_dns_user_needs_its_zone(session_server):
    with pytest.raises(Exception, match="missing argument ZONE"):
        session_server("check_dns_user")
