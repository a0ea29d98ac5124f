"""The resolver plugins get as `self.resolver` (qpsmtpd_py/helpers/dns.py), against the real
nsd on loopback (zones in t/services/start-services.sh) and a loopback UDP port
that never answers."""

import socket
import time

import dns.nameserver
import pytest

from harness import REAL_PLUGINS, TEST_PLUGINS, service_env
from qpsmtpd_py.config import Config
from qpsmtpd_py.helpers.dns import DNSFailure, Resolver, SessionResolver, resolver_for, reverse_ip



@pytest.fixture(scope="module")
def nsd():
    return (service_env("QPT_DNS_HOST"), int(service_env("QPT_DNS_PORT")))


@pytest.fixture
def silent():
    """A loopback UDP port that receives queries and never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()
    sock.close()


# -- list-zone names -----------------------------------------------------------------------------
@pytest.mark.no_services
def test_reverse_ip_ipv4_and_mapped():
    assert reverse_ip("1.2.3.4") == "4.3.2.1"
    assert reverse_ip("::ffff:1.2.3.4") == "4.3.2.1"
    assert reverse_ip("127.0.0.2") + ".dnsbl.test" == "2.0.0.127.dnsbl.test"


@pytest.mark.no_services
def test_reverse_ip_ipv6_nibbles():
    name = reverse_ip("2001:db8::1")
    labels = name.split(".")
    assert len(labels) == 32
    assert name == "1." + "0." * 23 + "8.b.d.0.1.0.0.2"
    assert reverse_ip("[2001:db8::1]") == name


@pytest.mark.no_services
def test_reverse_ip_refuses_junk():
    with pytest.raises(ValueError):
        reverse_ip("not an ip")


# -- answers from nsd ------------------------------------------------------------------------------
def test_query_answers_nxdomain_and_types(nsd):
    r = Resolver([nsd], timeout=3)
    assert r.query("2.0.0.127.dnsbl.test", "A") == ["127.0.0.2"]
    assert r.query("2.0.0.127.dnsbl.test", "TXT") == ["127.0.0.2 is listed in dnsbl.test"]
    assert r.query("3.0.0.127.dnsbl.test", "A") == []           # NXDOMAIN
    assert r.query("spam.test", "MX") == ["10 mx.spam.test"]


def test_cached_answers_negative_ones_included_come_back_without_a_lookup(nsd):
    """Once looked up, an answer, a name with no record of the type, and a name that
    does not exist all come back from the process's cache, done at once (a name not
    on a DNS list is the common answer: no thread, no query)."""
    r = Resolver([nsd], timeout=3)
    names = [("2.0.0.127.dnsbl.test", "A"), ("2.0.0.127.dnsbl.test", "MX"),
             ("3.0.0.127.dnsbl.test", "A")]
    first = [r.submit(name, rdtype).result() for name, rdtype in names]
    assert first == [["127.0.0.2"], [], []]
    assert [a.nxdomain for a in first] == [False, False, True]
    r._resolver.nameservers = [dns.nameserver.Do53Nameserver("127.0.0.1", 9)]   # nobody there
    threads = r._executor
    r._executor = lambda: pytest.fail("a cached answer was looked up in a thread")
    again = [r.submit(name, rdtype) for name, rdtype in names]
    assert all(p.done() for p in again)
    assert [p.result() for p in again] == first
    assert [p.result().nxdomain for p in again] == [False, False, True]
    r._executor = threads
    with pytest.raises(DNSFailure):                  # not cached: asked, and nobody answers
        r.submit("4.0.0.127.dnsbl.test", "A", timeout=0.5).result()


def test_several_lookups_in_flight_then_collected(nsd):
    r = SessionResolver(Resolver([nsd], timeout=3))
    ip = reverse_ip("127.0.0.2")
    pending = {zone: r.submit(f"{ip}.{zone}", "A") for zone in ("dnsbl.test", "dnswl.test", "rhsbl.test")}
    assert pending["dnsbl.test"].result(2) == ["127.0.0.2"]
    assert pending["dnswl.test"].result(2) == ["127.0.10.0"]
    assert pending["rhsbl.test"].result(2) == []
    assert all(p.done() for p in pending.values())


# -- time-outs -------------------------------------------------------------------------------------
@pytest.mark.no_services
def test_silent_server_times_out_within_dns_timeout(silent):
    r = Resolver([silent], timeout=1)
    start = time.monotonic()
    with pytest.raises(DNSFailure, match="time-out"):
        r.query("2.0.0.127.dnsbl.test", "A")
    assert 0.9 <= time.monotonic() - start < 1.8


@pytest.mark.no_services
def test_lookups_in_flight_wait_together_not_one_after_another(silent):
    """Six lookups to a dead server cost one time-out, not six."""
    r = Resolver([silent], timeout=1)
    start = time.monotonic()
    pendings = [r.submit(f"{i}.dnsbl.test", "A") for i in range(6)]
    for pending in pendings:
        with pytest.raises(DNSFailure):
            pending.result()
    assert time.monotonic() - start < 1.8


@pytest.mark.no_services
def test_per_call_timeouts(silent):
    r = Resolver([silent], timeout=10)
    start = time.monotonic()
    with pytest.raises(DNSFailure):
        r.query("a.dnsbl.test", timeout=0.5)                     # the lookup's own limit
    assert time.monotonic() - start < 1.2
    pending = r.submit("b.dnsbl.test")
    start = time.monotonic()
    with pytest.raises(DNSFailure):
        pending.result(timeout=0.3)                              # how long the caller waits
    assert time.monotonic() - start < 0.8
    assert not pending.done()                                    # still in flight; ask again later


@pytest.mark.no_services
def test_a_lookup_that_waited_for_a_thread_keeps_its_deadline(silent, monkeypatch):
    import qpsmtpd_py.helpers.dns as dns
    monkeypatch.setattr(dns, "MAX_THREADS", 1)
    r = Resolver([silent], timeout=0.5)
    start = time.monotonic()
    first, second = r.submit("a.dnsbl.test"), r.submit("b.dnsbl.test")
    for pending in (first, second):
        with pytest.raises(DNSFailure):
            pending.result()
    assert time.monotonic() - start < 1.2                         # not 0.5 + 0.5


# -- the session cache ---------------------------------------------------------------------------
def test_session_cache_keeps_answers_but_not_failures(nsd, silent):
    r = SessionResolver(Resolver([nsd], timeout=3))
    first = r.submit("2.0.0.127.dnsbl.test", "A")
    assert r.submit("2.0.0.127.DNSBL.test.", "a") is first       # in flight: shared
    assert first.result() == ["127.0.0.2"]
    assert r.submit("2.0.0.127.dnsbl.test", "A") is first        # answered: kept
    assert r.submit("2.0.0.127.dnsbl.test", "TXT") is not first

    dead = SessionResolver(Resolver([silent], timeout=0.3))
    failed = dead.submit("x.dnsbl.test")
    with pytest.raises(DNSFailure):
        failed.result()
    assert dead.submit("x.dnsbl.test") is not failed             # a failure is asked again


def test_addresses_and_ptr(nsd):
    r = SessionResolver(Resolver([nsd], timeout=3))
    assert r.addresses("mx.spam.test") == ["127.0.0.2"]
    assert isinstance(r.ptr("127.0.0.1"), list)


# -- config: dns_servers and dns_timeout -----------------------------------------------------------
class _App:
    def __init__(self, directory):
        self.config = Config([str(directory)])


def test_config_dns_servers_and_timeout_are_honoured(tmp_path, nsd, silent):
    (tmp_path / "dns_servers").write_text(f"{nsd[0]}:{nsd[1]}\n")
    (tmp_path / "dns_timeout").write_text("1\n")
    r = resolver_for(_App(tmp_path))
    assert r.timeout == 1.0
    assert r.query("2.0.0.127.dnsbl.test") == ["127.0.0.2"]

    other = tmp_path / "other"
    other.mkdir()
    (other / "dns_servers").write_text(f"[{silent[0]}]:{silent[1]}\n")
    (other / "dns_timeout").write_text("0.5\n")
    r = resolver_for(_App(other))
    start = time.monotonic()
    with pytest.raises(DNSFailure):
        r.query("2.0.0.127.dnsbl.test")
    assert time.monotonic() - start < 1.2


# -- a plugin that starts lookups at connect and reads them at RCPT --------------------------------
@pytest.mark.parametrize("client, expect", [
    ("127.0.0.2", (550, "127.0.0.2 is listed in dnsbl.test")),
    ("127.0.0.3", (250, None)),
])
def test_plugin_submits_at_connect_and_collects_at_rcpt(make_config, client, expect):
    srv = make_config(plugins=["t_dnsbl dnsbl.test rhsbl.test", "rcpt_ok", "queue/maildir {maildir}"],
                      files={"plugin_dirs": [TEST_PLUGINS, REAL_PLUGINS], "rcpthosts": "example.test"})
    with srv.session(env={"TCPREMOTEIP": client}) as c:
        c.cmd("HELO client.test")
        c.cmd("MAIL FROM:<a@b.test>")
        code, text = c.cmd("RCPT TO:<u@example.test>")
        assert code == expect[0], text
        if expect[1]:
            assert text == expect[1]


def test_plugin_with_dead_dns_fails_temporarily(make_config, silent):
    srv = make_config(plugins=["t_dnsbl", "rcpt_ok", "queue/maildir {maildir}"],
                      files={"plugin_dirs": [TEST_PLUGINS, REAL_PLUGINS], "rcpthosts": "example.test",
                             "dns_servers": f"{silent[0]}:{silent[1]}", "dns_timeout": "1"})
    with srv.session(env={"TCPREMOTEIP": "127.0.0.2"}, args=["-H"]) as c:
        c.cmd("HELO client.test")
        c.cmd("MAIL FROM:<a@b.test>")
        start = time.monotonic()
        code, text = c.cmd("RCPT TO:<u@example.test>")
        assert (code, text) == (450, "DNS lookup in dnsbl.test failed")
        assert time.monotonic() - start < 1.8
