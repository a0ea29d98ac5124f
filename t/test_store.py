"""qpsmtpd_py.helpers.store: the LMDB shared state, with real processes, fork and kill -9."""

import os
import pwd
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

from qpsmtpd_py.config import Config
from qpsmtpd_py.helpers.store import (READER_CHECK_SECONDS, Store, StoreError, check_store,
                                      open_store)

from fakeclock import FakeClock


def run_py(code, timeout=60, **kw):
    """Run Python code in a fresh process; returns CompletedProcess (text)."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, **kw)


pytestmark = pytest.mark.no_services     # LMDB and processes only: the fast lane


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def store(tmp_path, clock):
    """A store whose entries expire by the fake clock: tests advance it, never sleep."""
    s = Store(str(tmp_path / "store"), clock=clock)
    yield s
    s.close()


# -- the API -----------------------------------------------------------------------------------
def test_get_set_delete_str_and_bytes(store):
    t = store.table("greylist")
    assert t.get("nope") is None
    t.set("a", "hällo")
    t.set(b"b\x00\xff", b"\x00\x01")
    assert t.get(b"a") == "hällo".encode()
    assert t.get("b\x00\udcff") == b"\x00\x01"            # surrogateescape round trip
    assert t.delete("a") is True
    assert t.delete("a") is False
    assert t.get("a") is None
    assert store.table("never_written").delete("x") is False
    assert store.tables() == ["greylist"]                  # delete did not create a table


def test_tables_are_separate_and_items_by_prefix(store):
    a, b = store.table("a"), store.table("b")
    for key in ("192.0.2.1", "192.0.2.10", "192.0.20.1", "198.51.100.1"):
        a.set(key, "x")
    b.set("192.0.2.1", "other")
    assert [k for k, _ in a.items("192.0.2.")] == [b"192.0.2.1", b"192.0.2.10"]
    assert len(list(a.items())) == 4
    assert b.get("192.0.2.1") == b"other" and a.get("192.0.2.1") == b"x"
    assert store.tables() == ["a", "b"]


def test_items_reads_in_batches(store, clock, monkeypatch):
    import qpsmtpd_py.helpers.store as mod
    monkeypatch.setattr(mod, "BATCH", 7)
    t = store.table("t")
    for i in range(50):
        t.set(f"k{i:03d}", str(i), ttl=(1 if i % 5 == 0 else None))
    clock.advance(1)
    keys = [k for k, _ in t.items(b"k")]
    assert keys == [f"k{i:03d}".encode() for i in range(50) if i % 5]
    assert t.expire() == 10
    assert len(list(t.items())) == 40


def test_incr_and_update(store):
    t = store.table("counts")
    assert t.incr("c") == 1
    assert t.incr("c", 5) == 6
    assert t.incr("c", -2) == 4
    assert t.get("c") == b"4"
    t.set("text", "abc")
    with pytest.raises(ValueError):
        t.incr("text")
    assert t.update("u", lambda old: (old or b"") + b"x") == b"x"
    assert t.update("u", lambda old: old + b"y") == b"xy"
    assert t.update("u", lambda old: None) is None          # None deletes
    assert t.get("u") is None
    assert t.update("missing", lambda old: None) is None


def test_ttl_expiry(store, clock):
    t = store.table("ttl")
    t.set("short", "v", ttl=2)
    t.set("long", "v", ttl=60)
    t.set("forever", "v")
    assert t.get("short") == b"v"
    expires = {k: e for k, _, e in t.entries()}
    assert expires[b"forever"] is None and expires[b"long"] == clock.time() + 60
    clock.advance(1.999)
    assert t.get("short") == b"v"                            # alive until its time is up
    clock.advance(0.001)
    assert t.get("short") is None                            # invisible once expired
    assert [k for k, _ in t.items()] == [b"forever", b"long"]
    assert t.expire() == 1
    assert t.expire() == 0
    t.set("gone", "v", ttl=1)
    clock.advance(1)
    assert t.delete("gone") is False
    # incr: ttl set when the counter starts, kept while it lives, restarts when expired
    assert t.incr("n", ttl=2) == 1
    clock.advance(1)
    assert t.incr("n", ttl=100) == 2                         # the 2 s window stays
    clock.advance(1)
    assert t.get("n") is None
    assert t.incr("n", ttl=2) == 1
    # update keeps the expiry unless given a ttl
    t.set("u", "1", ttl=2)
    t.update("u", lambda old: old + b"2")
    assert t.get("u") == b"12"
    clock.advance(2)
    assert t.get("u") is None
    t.set("w", "1", ttl=2)
    t.update("w", lambda old: old + b"2", ttl=10)           # a new ttl restarts it
    clock.advance(5)
    assert t.get("w") == b"12"
    # long TTLs cost no waiting: a day passes at once
    t.set("day", "v", ttl=86400)
    clock.advance(86399)
    assert t.get("day") == b"v"
    clock.advance(1)
    assert t.get("day") is None
    assert store.expire() >= 3


def test_the_real_clock_is_the_default(tmp_path):
    """Production stores expire by wall time: an entry set with a TTL that has
    already passed (negative) is gone, one with a long TTL is there."""
    s = Store(str(tmp_path / "store"))
    t = s.table("t")
    t.set("past", "v", ttl=-1)
    t.set("future", "v", ttl=3600)
    assert t.get("past") is None and t.get("future") == b"v"
    (_, _, expires), = [e for e in t.entries() if e[0] == b"future"]
    assert abs(expires - time.time() - 3600) < 60
    s.close()


def test_bad_keys_and_names(store):
    t = store.table("t")
    with pytest.raises(ValueError):
        t.set("", "x")
    with pytest.raises(ValueError):
        t.set("k" * 512, "x")
    t.set("k" * 511, "x")
    with pytest.raises(ValueError):
        store.table("")
    with pytest.raises(TypeError):
        t.set("k", 1.5)


def test_open_store_reads_config_and_is_shared(tmp_path):
    conf = tmp_path / "config"
    conf.mkdir()
    (conf / "store_dir").write_text(f"{tmp_path}/shared\n")
    (conf / "store_sync").write_text("0\n")

    class App:
        config = Config([str(conf)])
    app1, app2 = App(), App()
    s1, s2 = open_store(app1), open_store(app2)
    assert s1 is s2 and s1.path == f"{tmp_path}/shared" and s1.sync is False
    check_store(app1)
    s1.table("x").set("k", "v")
    assert os.path.exists(f"{tmp_path}/shared/data.mdb")
    s1.close()


def test_stateful_plugins_make_their_tables_at_start_up(session_server, tmp_path):
    """`qpsmtpd-store list-tables` shows every stateful plugin's table as soon as the
    server has started, before any client came: a worker's first read of each goes
    straight to the table, with no look-up whether it exists."""
    directory = str(tmp_path / "store")
    srv = session_server("karma", "berkeley_ipblacklist", "greylisting", "connection_shaper",
                         files={"store_dir": directory})
    store = Store(directory)
    try:
        assert store.tables() == ["berkeley_ipblacklist", "connection_shaper", "greylist",
                                  "greylist_clients", "karma"]
        assert all(not list(store.table(name).items()) for name in store.tables())
        assert srv.talk("HELO a.test", "QUIT").codes[:2] == [220, 250]
    finally:
        store.close()


# -- errors ---------------------------------------------------------------------------------------
def test_directory_under_a_file_names_the_directory(tmp_path):
    (tmp_path / "file").write_text("x")
    store = Store(str(tmp_path / "file" / "store"))
    with pytest.raises(StoreError) as err:
        store.table("t").get("k")
    text = str(err.value)
    assert f"store_dir {tmp_path}/file/store" in text and "cannot create it" in text
    assert "install -d -o" in text


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to user nobody")
def test_unwritable_directory_as_another_user():
    """Root may write anywhere, so the check runs in a forked child as nobody."""
    nobody = pwd.getpwnam("nobody")
    base = tempfile.mkdtemp(prefix="qpsmtpd-store-test-")
    try:
        os.chmod(base, 0o755)
        ro = os.path.join(base, "ro")
        os.mkdir(ro, 0o755)
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:                                       # child: report and _exit
            try:
                os.setgid(nobody.pw_gid)
                os.setuid(nobody.pw_uid)
                lines = []
                for path in (ro, ro + "/sub"):
                    try:
                        Store(path).table("t").set("k", "v")
                        lines.append("NO ERROR")
                    except StoreError as exc:
                        lines.append(str(exc))
                os.write(wfd, "\n".join(lines).encode())
            finally:
                os._exit(0)
        os.close(wfd)
        with os.fdopen(rfd) as fh:
            first, second = fh.read().splitlines()
        os.waitpid(pid, 0)
        assert first.startswith(f"store_dir {ro}: not writable by nobody (uid {nobody.pw_uid})")
        assert second.startswith(f"store_dir {ro}/sub: cannot create it: Permission denied")
        assert "Fix:" in first and f"install -d -o smtpd -m 750 {ro}" in first
    finally:
        subprocess.run(["rm", "-rf", base])


def test_store_full_at_max_size(tmp_path):
    store = Store(str(tmp_path / "s"), map_size=256 << 10, max_size=1 << 20, sync=False)
    t = store.table("t")
    with pytest.raises(StoreError) as err:
        for i in range(5000):
            t.set(f"k{i}", b"x" * 1000)
    assert "the store is full" in str(err.value) and "store_max_size" in str(err.value)
    assert t.get("k1") == b"x" * 1000                         # what was written is intact
    store.close()


# -- map growth ------------------------------------------------------------------------------------
def test_map_grows_when_full(tmp_path):
    store = Store(str(tmp_path / "s"), map_size=128 << 10, sync=False)
    t = store.table("t")
    for i in range(3000):
        t.set(f"k{i:05d}", os.urandom(1000))
    t.update("big", lambda old: b"y" * 2_000_000)             # one value bigger than the map
    size = store.env().info()["map_size"]
    assert size >= 4 << 20
    assert len(list(t.items())) == 3001
    store.close()


def test_other_process_adopts_a_grown_map(tmp_path):
    path = str(tmp_path / "s")
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        from qpsmtpd_py.helpers.store import Store
        s = Store({path!r}, map_size=128 << 10, sync=False)
        t = s.table("t")
        t.set("child0", "x")
        print("open", flush=True)
        sys.stdin.readline()                 # parent grows the map meanwhile
        assert t.get("parent2999") is not None
        for i in range(2000):
            t.set(f"child{{i}}", b"z" * 1000)
        print("done", s.env().info()["map_size"], flush=True)
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "open\n"
        store = Store(path, map_size=128 << 10, sync=False)
        t = store.table("t")
        for i in range(3000):
            t.set(f"parent{i}", b"p" * 1000)
        child.stdin.write("go\n")
        child.stdin.flush()
        line = child.stdout.readline()
        assert line.startswith("done"), line
        assert child.wait(30) == 0
        assert t.get("child1999") == b"z" * 1000 and t.get("parent0") == b"p" * 1000
        store.close()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


# -- processes ---------------------------------------------------------------------------------------
def test_forked_children_lose_no_increment(tmp_path):
    """8 children x 500 increments of one counter, with a Store object the parent
    opened before forking (the children must reopen, not share, the environment)."""
    path = str(tmp_path / "s")
    out = run_py(f"""
        import os
        from qpsmtpd_py.helpers.store import Store
        s = Store({path!r})
        t = s.table("counter")
        t.set("n", "0")
        pids = []
        for child in range(8):
            pid = os.fork()
            if pid == 0:
                try:
                    if child % 2:
                        s.close()                # closing the inherited handle is fine too
                    for _ in range(500):
                        t.incr("n")
                    t.update("who", lambda old: (old or b"") + b"%d," % os.getpid())
                    os._exit(0)
                except BaseException as exc:
                    print("child", exc, flush=True)
                    os._exit(1)
            pids.append(pid)
        codes = [os.waitpid(pid, 0)[1] for pid in pids]
        print(codes, t.get("n").decode(), len(t.get("who").split(b",")) - 1)
        t.incr("n")                              # the parent still works after the forks
        print(t.get("n").decode())
    """)
    assert out.returncode == 0, out.stderr + out.stdout
    assert out.stdout.splitlines() == ["[0, 0, 0, 0, 0, 0, 0, 0] 4000 8", "4001"]


def test_independent_processes_lose_no_update(tmp_path):
    path = str(tmp_path / "s")
    code = f"""
        import sys
        from qpsmtpd_py.helpers.store import Store
        t = Store({path!r}).table("counter")
        for i in range(250):
            t.incr("n")
            t.update("list", lambda old: (old or b"") + b"x")
    """
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)]) for _ in range(4)]
    assert [p.wait(60) for p in procs] == [0, 0, 0, 0]
    store = Store(path)
    assert store.table("counter").get("n") == b"1000"
    assert store.table("counter").get("list") == b"x" * 1000
    store.close()


WRITER = """
import sys
from qpsmtpd_py.helpers.store import Store
t = Store(sys.argv[1]).table("t")
value = b"v" * 400
while True:
    def txn(txn):
        gen = int(txn.get(b"gen", b"\\0" * 8 + b"0")[8:]) + 1
        stamp = b"\\0" * 8 + b"%d:" % gen + value
        for i in range(300):
            txn.put(b"k%03d" % i, stamp)
        txn.put(b"gen", b"\\0" * 8 + b"%d" % gen)
    t.store.write("t", txn)
    t.incr("commits")
"""

CHECK = """
import sys
from qpsmtpd_py.helpers.store import Store
s = Store(sys.argv[1])
t = s.table("t")
gen = int(t.get("gen"))
stamps = {t.get(b"k%03d" % i).split(b":")[0] for i in range(300)}
assert stamps == {b"%d" % gen}, (gen, stamps)      # every transaction all or nothing
before = t.incr("after_kill")
t.set("x" * 10, "y" * 5000)
print(gen, before, s.env().readers().count("\\n"))
"""


def test_kill_9_writers_mid_transaction(tmp_path):
    """A child looping big write transactions is killed at random points; each
    time the data is consistent, the writer lock is recovered and writes go on."""
    path = str(tmp_path / "s")
    rng = random.Random(4)
    last_gen = 0
    for round_no in range(6):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, path])
        deadline = time.time() + 20
        while time.time() < deadline:        # wait until it is writing
            time.sleep(0.05)
            probe = run_py(f"""
                from qpsmtpd_py.helpers.store import Store
                print(int(Store({path!r}).table("t").get("gen") or 0))
            """, timeout=20)
            if probe.returncode == 0 and int(probe.stdout) > last_gen:
                break
        time.sleep(rng.uniform(0, 0.2))
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        check = subprocess.run([sys.executable, "-c", CHECK, path], capture_output=True,
                               text=True, timeout=20)   # a stuck writer lock would time out
        assert check.returncode == 0, check.stderr
        gen, after_kill, _ = map(int, check.stdout.split())
        assert gen > last_gen and after_kill == round_no + 1
        last_gen = gen


def test_dead_reader_does_not_pin_pages(tmp_path):
    """A killed process that held a read transaction leaves a reader slot; the
    next open clears it (reader_check) so old pages can be reused."""
    path = str(tmp_path / "s")
    reader = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from qpsmtpd_py.helpers.store import Store
        s = Store({path!r})
        s.table("t").set("k", "v")
        txn = s.env().begin()
        txn.get(b"k")
        print("reading", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    assert reader.stdout.readline() == "reading\n"
    clock = FakeClock()
    store = Store(path, clock=clock)
    assert str(reader.pid) in store.env().readers()
    reader.kill()
    reader.wait()
    assert str(reader.pid) in store.env().readers()           # until the next check
    clock.advance(READER_CHECK_SECONDS)
    assert str(reader.pid) not in store.env().readers()
    store.close()
    store = Store(path)                                       # and a fresh open checks too
    t = store.table("t")
    for i in range(200):                       # pages can be recycled: the file stays small
        t.set("k", os.urandom(2000))
    assert os.path.getsize(os.path.join(path, "data.mdb")) < 1 << 20
    store.close()
