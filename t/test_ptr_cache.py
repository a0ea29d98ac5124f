"""The engine's client PTR lookup is cheap when it fails (issue 15 item 2): an
address whose lookup failed or found no name is not asked again for
PTR_NEGATIVE_TTL seconds, in this process or any process forked from it, and
a cached answer needs no resolver thread."""

import os
import socket
import time

import pytest

from harness import service_env
from qpsmtpd_py.config import Config
from qpsmtpd_py.connection import Connection
from qpsmtpd_py.helpers import dns as qdns


class _App:
    def __init__(self, directory):
        self.config = Config([str(directory)])


@pytest.fixture
def silent():
    """A loopback UDP port that receives queries and never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()
    sock.close()


def _app(tmp_path, server, timeout="0.5"):
    (tmp_path / "dns_servers").write_text(f"{server[0]}:{server[1]}\n")
    (tmp_path / "dns_timeout").write_text(timeout + "\n")
    return _App(tmp_path)


def _count_submits(monkeypatch):
    calls = []
    original = qdns.Resolver.submit

    def submit(self, name, rdtype="A", timeout=None):
        calls.append((name, rdtype))
        return original(self, name, rdtype, timeout)
    monkeypatch.setattr(qdns.Resolver, "submit", submit)
    return calls


@pytest.mark.no_services
def test_negative_cache_expires():
    cache = qdns.NegativeCache()
    cache.put(("x",), "192.0.2.7", cache.FAILED, ttl=30, now=100.0)
    assert cache.get(("x",), "192.0.2.7", now=129.0) == cache.FAILED
    assert cache.get(("x",), "192.0.2.7", now=130.5) is None
    assert cache.get(("other servers",), "192.0.2.7", now=110.0) is None
    assert cache.get(("x",), "192.0.2.8", now=110.0) is None


@pytest.mark.no_services
def test_negative_cache_is_shared_with_forked_processes():
    cache = qdns.NegativeCache()
    pid = os.fork()
    if pid == 0:
        cache.put(("x",), "192.0.2.9", cache.NO_NAME, now=time.monotonic())
        os._exit(0)
    os.waitpid(pid, 0)
    assert cache.get(("x",), "192.0.2.9") == cache.NO_NAME


def test_failed_ptr_is_not_asked_again_and_plugins_see_the_failure(tmp_path, silent, monkeypatch):
    app = _app(tmp_path, silent)
    ip = "192.0.2.33"
    calls = _count_submits(monkeypatch)
    first = Connection(remote_ip=ip)
    start = time.monotonic()
    assert qdns.reverse_name(app, ip, first)() is None          # one time-out
    assert time.monotonic() - start < 1.0
    assert len(calls) == 1

    second = Connection(remote_ip=ip)
    start = time.monotonic()
    assert qdns.reverse_name(app, ip, second)() is None
    assert time.monotonic() - start < 0.05                       # no second wait
    assert len(calls) == 1
    with pytest.raises(qdns.DNSFailure):                          # fcrdns/helo: a failure, not "no name"
        second.dns.ptr(ip)
    assert len(calls) == 1
    assert not second.dns.timed_out                               # other lookups still go out


def test_no_name_is_cached_as_no_name(tmp_path):
    nsd = (service_env("QPT_DNS_HOST"), int(service_env("QPT_DNS_PORT")))
    app = _app(tmp_path, nsd, "2")
    ip = "127.0.0.99"                                             # no PTR in the test zone
    assert qdns.reverse_name(app, ip) is None
    assert qdns.ptr_failures.get(qdns.resolver_for(app).servers, ip) == qdns.NegativeCache.NO_NAME
    conn = Connection(remote_ip=ip)
    assert qdns.reverse_name(app, ip, conn)() is None
    answers = conn.dns.ptr(ip)
    assert answers == [] and answers.nxdomain


def test_cached_answer_needs_no_thread(tmp_path, monkeypatch):
    nsd = (service_env("QPT_DNS_HOST"), int(service_env("QPT_DNS_PORT")))
    app = _app(tmp_path, nsd, "2")
    first = qdns.reverse_name(app, "127.0.0.1", Connection(remote_ip="127.0.0.1"))()
    assert first
    calls = []
    monkeypatch.setattr(qdns.Resolver, "_executor", lambda self: calls.append(1))
    assert qdns.reverse_name(app, "127.0.0.1", Connection(remote_ip="127.0.0.1"))() == first
    assert calls == []


def test_a_found_name_comes_back_without_the_resolver_until_its_ttl_ends(tmp_path, monkeypatch):
    """The client's PTR name is kept in the process for as long as the resolver's
    cache keeps the answer (its TTL): later sessions get it without a lookup, and
    after the TTL the resolver (and so the DNS server) is asked again."""
    nsd = (service_env("QPT_DNS_HOST"), int(service_env("QPT_DNS_PORT")))
    app = _app(tmp_path, nsd, "2")
    monkeypatch.setattr(qdns, "_PTR_NAMES", {})
    first = qdns.reverse_name(app, "127.0.0.1", Connection(remote_ip="127.0.0.1"))()
    assert first
    expires = qdns.resolver_for(app).expiration(qdns.ptr_name("127.0.0.1"), "PTR")
    assert expires is not None and expires > time.time()
    calls = _count_submits(monkeypatch)
    for _ in range(5):
        assert qdns.reverse_name(app, "127.0.0.1", Connection(remote_ip="127.0.0.1"))() == first
        assert qdns.reverse_name(app, "127.0.0.1") == first
    assert calls == []
    real = time.time
    monkeypatch.setattr(qdns.time, "time", lambda: real() + (expires - real()) + 1)
    assert qdns.reverse_name(app, "127.0.0.1", Connection(remote_ip="127.0.0.1"))() == first
    assert calls == [(qdns.ptr_name("127.0.0.1"), "PTR")]
