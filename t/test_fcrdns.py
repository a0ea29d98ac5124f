"""fcrdns against the real nsd: 127.in-addr.arpa and dnscheck.test of
t/services/start-services.sh. 127.0.0.1 -> mx.example.test -> 127.0.0.1 (pass);
127.0.0.3 -> nomatch.example.test -> 127.0.0.33 (same /24: pass); 127.0.0.6 ->
fail6.dnscheck.test -> 127.0.1.6 (fail); 127.0.0.7 -> a name that does not exist
(fail); 127.0.0.4 has no PTR (permerror)."""

import time

import pytest

from dnsproxy import DNSProxy
from harness import service_env

MESSAGE = b"Subject: t\r\n\r\nbody\r\n.\r\n"


def session(session_server, ip, line="fcrdns", rdns=True, files=None, rcpts=("u@example.test",)):
    server = session_server(line, files={"loglevel": "6", **(files or {})}, rdns=rdns)
    return server.talk("HELO client.example.test", "MAIL FROM:<a@example.test>",
                       *(f"RCPT TO:<{r}>" for r in rcpts), "DATA", MESSAGE, "QUIT",
                       remote_ip=ip)


def auth_results(d):
    """The Authentication-Results field of the first delivered message (unfolded)."""
    header = d.messages[0]["header"].replace("\n\t", " ").replace("\n ", " ")
    fields = [line for line in header.split("\n") if line.startswith("Authentication-Results:")]
    assert len(fields) == 1, header
    return fields[0]


@pytest.mark.parametrize("ip, result, comment", [
    ("127.0.0.1", "pass", "mx.example.test"),
    ("127.0.0.3", "pass", "nomatch.example.test"),
    ("127.0.0.6", "fail", "fail6.dnscheck.test"),
    ("127.0.0.7", "fail", "nxname.dnscheck.test"),
    ("127.0.0.4", "permerror", "no PTR record"),
])
def test_iprev_result_in_authentication_results(session_server, ip, result, comment):
    d = session(session_server, ip)
    assert d.codes[-2] == 250, d.pairs
    assert f"iprev={result} policy.iprev={ip} ({comment})" in auth_results(d)
    assert d.connection.notes["fcrdns"] == result
    assert d.connection.notes["karma"] == (1 if result == "pass" else -1)


def test_without_the_engines_ptr_lookup_too(session_server):
    d = session(session_server, "127.0.0.1", rdns=False)
    assert "iprev=pass" in auth_results(d)


def test_every_message_of_a_connection_has_it_once(session_server):
    server = session_server("fcrdns", files={"loglevel": "6"}, rdns=True)
    d = server.talk("HELO client.example.test",
                    *["MAIL FROM:<a@example.test>", "RCPT TO:<u@example.test>", "DATA", MESSAGE] * 2,
                    "QUIT", remote_ip="127.0.0.1")
    assert len(d.messages) == 2
    for message in d.messages:
        assert message["header"].count(" iprev=pass") == 1


@pytest.mark.parametrize("ip, code", [("127.0.0.6", 450), ("127.0.0.4", 450), ("127.0.0.1", 250)])
def test_reject_1_refuses_rcpt_but_not_postmaster(session_server, ip, code):
    d = session(session_server, ip, line="fcrdns reject 1",
                rcpts=("u@example.test", "postmaster@example.test"))
    assert d.codes[3] == code
    assert d.codes[4] == 250
    if code == 450:
        assert d.pairs[3][1] == (f"Your address {ip} has no forward-confirmed reverse DNS "
                                 f"({'fail' if ip.endswith('6') else 'permerror'})")


def test_relay_clients_are_skipped(session_server):
    server = session_server("fcrdns", files={"loglevel": "6"}, rdns=True)
    d = server.talk("HELO x.test", "MAIL FROM:<a@example.test>", "RCPT TO:<u@example.test>",
                    "DATA", MESSAGE, "QUIT", remote_ip="127.0.0.6", relay_client=True)
    assert "iprev=" not in auth_results(d)


def test_dns_that_never_answers_is_temperror_within_dns_timeout(session_server):
    with DNSProxy(("127.0.0.1", int(service_env("QPT_DNS_PORT"))), answer=False) as proxy:
        start = time.monotonic()
        d = session(session_server, "127.0.0.1", line="fcrdns reject 1",
                    files={"dns_servers": f"127.0.0.1:{proxy.port}", "dns_timeout": "1.5"})
        elapsed = time.monotonic() - start
    assert d.codes[3] == 250                       # a DNS outage never refuses
    assert "iprev=temperror" in auth_results(d)
    assert elapsed < 2.6, elapsed     # one dns_timeout (1.5 s), not two


def test_ptr_and_forward_lookups_are_each_asked_once(session_server):
    with DNSProxy(("127.0.0.1", int(service_env("QPT_DNS_PORT")))) as proxy:
        d = session(session_server, "127.0.0.1", line="fcrdns reject 1",
                    files={"dns_servers": f"127.0.0.1:{proxy.port}"},
                    rcpts=[f"u{i}@example.test" for i in range(50)])
        assert d.codes.count(250) >= 52
        assert sorted(proxy.queries) == [("1.0.0.127.in-addr.arpa", "PTR"),
                                         ("mx.example.test", "A"), ("mx.example.test", "AAAA")]
