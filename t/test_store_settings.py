"""Store settings that need no server: store_sync's forms and group commit (the
default: a thread fsyncs within a second, one fsync covers every process), the
store_backend choice and Redis addresses."""

import os
import signal
import subprocess
import sys
import time

import pytest

from qpsmtpd_py.config import ConfigError
from qpsmtpd_py.helpers.store import Store, _sync, make_store
from qpsmtpd_py.helpers.store_redis import RedisStore, parse_address
from qpsmtpd_py.helpers.store_sync import STAMP

pytestmark = pytest.mark.no_services


class FakeConfig(dict):
    def get(self, name, default=None):
        return super().get(name, default)


def test_store_sync_forms():
    assert _sync(None) == 1.0 and _sync("yes") is True and _sync("0") is False
    assert _sync("1s") == 1.0 and _sync("0.5s") == 0.5
    assert make_store(FakeConfig(store_dir="/nonexistent")).sync_every == 1.0   # the default
    with pytest.raises(ConfigError, match="store_sync: 'sometimes'"):
        _sync("sometimes")


def test_group_commit_store_writes_and_syncs(tmp_path):
    store = Store(str(tmp_path / "s"), sync=0.5)
    table = store.table("t")
    for n in range(20):
        table.incr("n")
    assert table.get("n") == b"20" and store.sync_every == 0.5
    store.close()


def stamp(path):
    data = (path / STAMP).read_bytes()
    return int.from_bytes(data, sys.byteorder, signed=True) if len(data) == 8 else 0


def test_group_commit_fsyncs_within_the_period_in_a_thread(tmp_path):
    store = Store(str(tmp_path / "s"), sync=0.2)
    syncs = []
    real = store._sync_now
    store._sync_now = store._group.sync = lambda: (syncs.append(time.monotonic()), real())
    started = time.monotonic()
    for n in range(50):
        store.table("t").incr("n")
    assert syncs == []                                   # no commit waited for the disk
    thread = store._group.thread
    assert thread is not None and thread.daemon
    # the thread takes no signals: the engine's SIGALRM deadlines must reach the main thread
    status = open(f"/proc/self/task/{thread.native_id}/status").read()
    blocked = int(next(line for line in status.splitlines() if line.startswith("SigBlk")).split()[1], 16)
    assert blocked & (1 << (signal.SIGALRM - 1)) and blocked & (1 << (signal.SIGTERM - 1))
    thread.join(2)
    assert not thread.is_alive()                         # quiet: the thread has ended
    assert len(syncs) == 1 and 0.15 <= syncs[0] - started < 1.0
    assert not store._group.pending() and stamp(tmp_path / "s") > 0
    store.table("t").incr("n")                           # the next write starts another
    store.close()                                        # close fsyncs what is owed at once
    assert len(syncs) == 2 and store.table("t").get("n") == b"51"
    store.close()


def test_one_fsync_covers_every_process(tmp_path):
    """A process whose commits came before another's fsync started does not fsync."""
    store = Store(str(tmp_path / "s"), sync=30)
    syncs = []
    store._group.sync = lambda: syncs.append(1)
    store.table("t").set("k", "v")
    store._group._set_stamp(time.monotonic_ns())         # another worker's fsync, later
    store.flush()
    assert syncs == [] and not store._group.pending()
    store.table("t").set("k", "w")                       # written after that fsync: owed
    store.flush()
    assert syncs == [1]
    store.close()


def test_group_commit_loses_nothing_when_the_process_is_killed(tmp_path):
    path = tmp_path / "s"
    Store(str(path)).close()
    child = subprocess.Popen([sys.executable, "-c", f"""
import os, signal
from qpsmtpd_py.helpers.store import Store
Store({str(path)!r}).table("t").set("k", "committed")
os.kill(os.getpid(), signal.SIGKILL)
"""])
    assert child.wait(20) == -signal.SIGKILL
    assert Store(str(path)).table("t").get("k") == b"committed"


def test_a_tool_that_exits_leaves_nothing_unsynced(tmp_path):
    path = tmp_path / "s"
    before = time.monotonic_ns()
    subprocess.run([sys.executable, "-m", "qpsmtpd_py.cli.store_tool", "--dir", str(path),
                    "set", "t", "k", "v"], check=True, timeout=20)
    assert stamp(path) >= before                          # fsynced at exit, not a second later


def test_backend_choice_and_redis_addresses(tmp_path):
    assert make_store(FakeConfig(store_dir=str(tmp_path))).backend == "lmdb"
    store = make_store(FakeConfig(store_backend="redis", store_redis="10.0.0.5:6380/2",
                                  store_redis_prefix="mx:"))
    assert isinstance(store, RedisStore) and store.params == {"host": "10.0.0.5", "port": 6380, "db": 2}
    assert store.prefix == b"mx:"
    assert parse_address("redis://[::1]:7000/1") == {"host": "::1", "port": 7000, "db": 1}
    assert parse_address("unix:/run/redis.sock?db=3") == {"unix_socket_path": "/run/redis.sock", "db": 3}
    with pytest.raises(ConfigError, match="store_backend: 'memcached'"):
        make_store(FakeConfig(store_backend="memcached"))


def test_fork_while_the_syncer_is_in_fsync(tmp_path):
    """A child closes the environment it inherited; had the parent's syncer been inside
    env.sync at the fork, py-lmdb in the child would wait for that call forever."""
    store = Store(str(tmp_path / "s"), sync=0.05)
    table = store.table("t")
    for round_ in range(3):
        table.set("big", os.urandom(8 << 20))           # an fsync of 8 MB takes a while
        in_sync = time.monotonic() + 5
        while store._group.last_write and time.monotonic() < in_sync:
            if not store._group.io_lock.acquire(blocking=False):
                break                                    # the syncer is in its fsync: fork now
            store._group.io_lock.release()
        pid = os.fork()
        if pid == 0:
            try:
                os._exit(0 if table.get("big") is not None else 1)
            finally:
                os._exit(2)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.02)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"round {round_}: the child hung closing the inherited store")
        assert status == 0
    store.close()


def test_stores_dropped_while_their_syncer_runs_close_and_never_block_a_fork(tmp_path):
    """A Store nobody holds any more closes at once (so the directory can be opened
    again), even when the last reference goes away in its syncer thread."""
    script = f"""
import gc, os
from qpsmtpd_py.helpers.store import Store
path = {str(tmp_path / "s")!r}
for n in range(30):
    Store(path, sync=0.01).table("t").set("k", os.urandom(1 << 20))
    gc.collect()
    pid = os.fork()                       # the at-fork hook takes every syncer's lock
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
print(Store(path).table("t").get("k") is not None)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "True", done.stderr
