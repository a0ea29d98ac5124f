"""Shared state under real load (issue 11 items 5 and 6): qpsmtpd-prefork with 20
children and 50 concurrent clients from five loopback addresses, greylisting,
connection_shaper, karma and a token bucket all writing the same keys, on LMDB and
on Redis: every counter exact; state kept through kill -9 of children and of the
master; two servers (two config dirs) on one Redis see each other's state; a Redis
outage costs greylisting, not mail."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest

from harness import Client, ConfigDir, free_port
from qpsmtpd_py.helpers.greylist import client_key, triplet_key
from qpsmtpd_py.helpers.karma import ip_key, parse as parse_karma
from qpsmtpd_py.helpers.store import Store
from qpsmtpd_py.helpers.store_redis import RedisStore, StoreUnavailable
from serverproc import Server, alive, wait_until

PREFORK = "qpsmtpd-prefork"
IPS = [f"127.0.0.{n}" for n in range(11, 16)]          # five client addresses
SIZE = 1000                                              # token bucket size (rate 0: exact)
STATE_PLUGINS = [
    "connection_shaper threshold 100000 exptime 86400",
    "karma",
    "t_note karma 3",                                    # every connection is a nice one
    "berkeley_tokenbucketadd method tokenbucket rate 0 size %d" % SIZE,
    "greylisting sender 1 recipient 1 black_timeout 86400",
    "rcpt_ok",
    "queue/discard",
]


def redis_address():
    host, port = os.environ.get("QPT_REDIS_HOST"), os.environ.get("QPT_REDIS_PORT")
    if not (host and port):
        if os.environ.get("CI") == "true":
            pytest.fail("QPT_REDIS_HOST/QPT_REDIS_PORT not set: the redis component of t/services")
        pytest.skip("no test Redis (t/services/start-services.sh STATE redis)")
    return f"{host}:{port}"


def state_config(make_config, tmp_path, backend, prefix=None, name="config", plugins=STATE_PLUGINS):
    files = {"rcpthosts": "example.test", "loglevel": "6",
             "plugin_dirs": [os.path.join(os.path.dirname(__file__), "plugins"),
                             os.path.join(os.path.dirname(os.path.dirname(__file__)), "plugins")]}
    if backend == "redis":
        files.update(store_backend="redis", store_redis=redis_address(), store_redis_prefix=prefix)
    else:
        files["store_dir"] = str(tmp_path / "store")
    if name == "config":
        return make_config(plugins=plugins, files=files)
    os.makedirs(tmp_path / name, exist_ok=True)          # a second instance: its own dir
    return ConfigDir(tmp_path / name, plugins=plugins, files=files)


def connect(port, source):
    sock = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0))
    client = Client(sock, None, 30)
    client.read_reply()
    return client


def one_client(port, source, results):
    """One session: a greylisted RCPT (450) whose refusal also costs a token."""
    try:
        c = connect(port, source)
        try:
            c.ehlo()
            assert c.cmd("MAIL FROM:<s@sender.test>")[0] == 250
            results.append(c.cmd("RCPT TO:<u@example.test>")[0])
            c.cmd("QUIT")
        finally:
            c.close()
    except Exception as exc:                              # counted below as a failure
        results.append(repr(exc))


def burst(port, per_ip=10):
    """50 clients at once, 10 from each address; returns their RCPT replies."""
    results = []
    threads = [threading.Thread(target=one_client, args=(port, ip, results))
               for _ in range(per_ip) for ip in IPS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def open_test_store(backend, tmp_path, prefix):
    if backend == "redis":
        return RedisStore(redis_address(), prefix=prefix)
    return Store(str(tmp_path / "store"))


def check_counts(store, sessions, connected=None):
    """Every counter equals the number of sessions from that address: `sessions`
    ran to the end; `connected` (default the same) passed pre-connection."""
    for ip in IPS:
        window = store.table("connection_shaper").get(ip)
        expect = (connected or {}).get(ip, sessions)
        assert window is not None and int(window.split(b":")[1]) == expect, (ip, window)
        penalty, naughty, nice, connects = parse_karma(store.table("karma").get(ip_key(ip)))
        assert (naughty, nice, connects) == (0, sessions, sessions), ip
        tokens = float(store.table("berkeley_ipblacklist").get(ip).split(b":")[0])
        assert tokens == SIZE - sessions, (ip, tokens)
        record = store.table("greylist").get(triplet_key(ip, "s@sender.test", "u@example.test"))
        ts, new, black, white = (int(x) for x in record.split(b":"))
        assert (new, black, white) == (1, sessions - 1, 0), (ip, record)


@pytest.mark.parametrize("backend", ["lmdb", "redis"])
def test_fifty_concurrent_clients_exact_counts_and_state_survives_kill_9(make_config, tmp_path, backend):
    prefix = f"qpt-{uuid.uuid4().hex[:8]}:"
    cfg = state_config(make_config, tmp_path, backend, prefix)
    port = free_port()
    store = open_test_store(backend, tmp_path, prefix)
    server = Server(PREFORK, cfg, "--children", "20", "--idle-children", "20", port=port)
    try:
        results = burst(port)
        assert results == [450] * 50, results
        check_counts(store, 10)
        # kill -9 two idle children and one in the middle of a session
        c = connect(port, IPS[0])
        c.ehlo()
        assert c.cmd("MAIL FROM:<s@sender.test>")[0] == 250
        busy = [pid for pid, title in server.children().items() if IPS[0] in title]
        idle = [pid for pid, title in server.children().items() if title.endswith("idle")][:2]
        for pid in busy + idle:
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not any(alive(p) for p in busy + idle), what="children gone")
        c.close()
        wait_until(lambda: len(server.children()) == 20, what="pool refilled")
        assert burst(port) == [450] * 50
        # the killed session counted its connection, but reached neither RCPT nor disconnect
        check_counts(store, 20, connected={IPS[0]: 21})
        # kill -9 the master (its orphaned children stop on their own), then restart
        kids = list(server.children())
        os.kill(server.pid, signal.SIGKILL)
        server.proc.wait(10)
        for pid in kids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait_until(lambda: not any(alive(p) for p in kids), what="old children gone")
    finally:
        server.stop()
    server = Server(PREFORK, cfg, "--children", "20", "--idle-children", "20", port=port)
    try:
        assert burst(port) == [450] * 50
        check_counts(store, 30, connected={IPS[0]: 31})
    finally:
        server.stop()
        if backend == "redis":
            cleanup(store)


def cleanup(store):
    client = store.client()
    for key in client.scan_iter(match=store.prefix + b"*"):
        client.delete(key)


def test_two_servers_on_one_redis_share_triplets_buckets_and_karma(make_config, tmp_path):
    prefix = f"qpt-{uuid.uuid4().hex[:8]}:"
    common = ["greylisting black_timeout 1", "rcpt_ok", "queue/discard"]
    a = state_config(make_config, tmp_path, "redis", prefix, plugins=[
        "karma reject connect", "berkeley_tokenbucketadd method tokenbucket rate 0 size 2", *common])
    b = state_config(make_config, tmp_path, "redis", prefix, name="b", plugins=[
        "karma reject connect", "berkeley_ipblacklist method tokenbucket rate 0 size 2 action deny",
        *common])
    store = RedisStore(redis_address(), prefix=prefix)
    try:
        with Server(PREFORK, a, "--children", "2") as sa, Server(PREFORK, b, "--children", "2") as sb:
            def rcpt(server, source, to="u@example.test"):
                c = connect(server.port, source)
                try:
                    c.ehlo()
                    reply = c.cmd("MAIL FROM:<s@sender.test>")     # greylisting at MAIL
                    return reply if reply[0] != 250 else c.cmd(f"RCPT TO:<{to}>")
                finally:
                    c.cmd("QUIT")
                    c.close()
            # greylisting: deferred on A, accepted on B after black_timeout
            assert rcpt(sa, "127.0.0.21")[0] == 450
            time.sleep(1.2)
            assert rcpt(sb, "127.0.0.21")[0] == 250
            assert store.table("greylist").get(client_key("127.0.0.21")).endswith(b":1")
            # token bucket: two refusals on A (greylisting's) blacklist the client on B
            for _ in range(2):
                assert rcpt(sa, "127.0.0.22")[0] == 450
            sock = socket.create_connection(("127.0.0.1", sb.port), timeout=10,
                                            source_address=("127.0.0.22", 0))
            greeting = sock.makefile("rb").readline()
            sock.close()
            assert greeting.startswith(b"550 Your IP is blacklisted"), greeting
            # karma: a naughty connection on A (-2 for each malformed MAIL) puts the
            # client in B's penalty box
            c = connect(sa.port, "127.0.0.23")
            c.ehlo()
            assert [c.cmd("MAIL FROM: <s@sender.test>")[0] for _ in range(2)] == [450, 450]
            c.cmd("QUIT")
            c.close()
            wait_until(lambda: store.table("karma").get(ip_key("127.0.0.23")) is not None,
                       what="A's karma record")
            sock = socket.create_connection(("127.0.0.1", sb.port), timeout=10,
                                            source_address=("127.0.0.23", 0))
            greeting = sock.makefile("rb").readline()
            sock.close()
            assert greeting.startswith(b"550 You were naughty. You cannot connect for"), greeting
    finally:
        cleanup(store)


def start_redis(port, workdir):
    os.makedirs(workdir, exist_ok=True)
    proc = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                             "--appendonly", "no", "--dir", workdir], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16) == b"+PONG\r\n":
                    return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("private redis-server did not start")


def test_redis_outage_means_no_greylisting_never_lost_mail(session_server, tmp_path, clock):
    """A private redis-server is stopped mid-test: mail is accepted without greylisting and
    the error logged, each session fails fast (back-off, no connect time-out per call);
    when Redis is back, greylisting resumes."""
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    proc = start_redis(port, str(tmp_path / "redis"))
    try:
        srv = session_server("greylisting black_timeout 60", files={
            "store_backend": "redis", "store_redis": f"127.0.0.1:{port}", "loglevel": "6"})

        def mail(ip="192.0.2.10"):
            return srv.talk("EHLO c.test", "MAIL FROM:<a@b.test>", "RCPT TO:<u@example.test>",
                            "DATA", b"Subject: x\r\n\r\nhi\r\n.\r\n", "QUIT", remote_ip=ip)
        assert mail().codes[2] == 450
        proc.terminate()
        proc.wait(10)
        started = time.monotonic()
        for n in range(5):
            d = mail(f"192.0.2.{20 + n}")
            assert d.codes[2:6] == [250, 250, 354, 250], d.pairs
            assert "error, store:" in d.log and "(no greylisting)" in d.log
            assert len(d.messages) == 1                   # queued, not lost
        assert time.monotonic() - started < 3.0
        proc = start_redis(port, str(tmp_path / "redis"))
        clock.advance(31)                                 # past the longest back-off
        d = mail("192.0.2.30")
        assert d.codes[2] == 450 and "reachable again" in srv.stderr.getvalue()
    finally:
        proc.terminate()
        proc.wait(10)


def test_redis_and_lmdb_tables_mean_the_same(tmp_path):
    from fakeclock import FakeClock
    prefix = f"qpt-{uuid.uuid4().hex[:8]}:"
    clock = FakeClock(start=time.time())
    stores = [Store(str(tmp_path / "s"), clock=clock), RedisStore(redis_address(), prefix=prefix, clock=clock)]
    try:
        for store in stores:
            t = store.table("same")
            t.set("a", "1", ttl=100)
            assert t.get("a") == b"1" and t.get("missing", b"d") == b"d"
            assert t.incr("n", 2, ttl=50) == 2 and t.incr("n") == 3
            assert t.update("a", lambda old: old + b"x") == b"1x"
            assert t.update("b", lambda old: (b"new" if old is None else old, 30)) == b"new"
            assert t.update("b", lambda old: None) is None and t.get("b") is None
            assert [k for k, _ in t.items()] == [b"a", b"n"]
            assert [k for k, _ in t.items(b"n")] == [b"n"]
            expires = {k: e for k, _, e in t.entries()}
            assert 95 < expires[b"a"] - clock.time() <= 100 and 45 < expires[b"n"] - clock.time() <= 50
            assert t.delete("a") is True and t.delete("a") is False
            assert "same" in store.tables()
        with pytest.raises(ValueError):
            stores[1].table("bad:name")
    finally:
        cleanup(stores[1])


def test_redis_updates_are_atomic_across_processes(tmp_path):
    prefix = f"qpt-{uuid.uuid4().hex[:8]}:"
    code = f"""
import sys
from qpsmtpd_py.helpers.store_redis import RedisStore
t = RedisStore({redis_address()!r}, prefix={prefix!r}).table("race")
for _ in range(100):
    t.incr("counter")
    t.update("text", lambda old: str(int(old or 0) + 1))
"""
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(8)]
    assert all(p.wait(120) == 0 for p in procs)
    store = RedisStore(redis_address(), prefix=prefix)
    try:
        assert store.table("race").get("counter") == b"800"
        assert store.table("race").get("text") == b"800"
        assert 0 < store.client().pttl(prefix.encode() + b"race:text") <= 180 * 86400 * 1000
    finally:
        cleanup(store)


def test_unreachable_redis_fails_fast_with_back_off():
    from fakeclock import FakeClock
    clock = FakeClock()
    store = RedisStore(f"127.0.0.1:{free_port()}", clock=clock)
    with pytest.raises(StoreUnavailable, match="next try in 0.5s"):
        store.table("t").get("a")
    with pytest.raises(StoreUnavailable, match="unavailable \\(ConnectionError"):
        store.table("t").get("a")                        # during the back-off: no attempt
    clock.advance(0.6)
    with pytest.raises(StoreUnavailable, match="next try in 1.0s"):
        store.table("t").get("a")


def test_connection_shaper_refuses_before_the_greeting(make_config, tmp_path):
    cfg = make_config(plugins=["connection_shaper", "rcpt_ok", "queue/discard"],
                      files={"store_dir": str(tmp_path / "store"), "rcpthosts": "example.test",
                             "connection_shaper": "exptime 60\nthreshold 2", "loglevel": "6"})
    with Server(PREFORK, cfg, "--children", "2") as server:
        for _ in range(2):
            c = connect(server.port, "127.0.0.31")
            assert c.code == 220
            c.cmd("QUIT")
            c.close()
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10,
                                        source_address=("127.0.0.31", 0))
        data = sock.makefile("rb").read()             # the reply, then EOF: closed at once
        sock.close()
        assert data == b"451 Sorry, try again later\r\n"
        assert connect(server.port, "127.0.0.32").code == 220      # another client
        wait_until(lambda: "exceeds the threshold from 127.0.0.31" in server.log, what="log")
