"""Shared state for stateful plugins: one LMDB environment per store directory.

Greylisting, karma, connection_shaper, token buckets ... all live in named
tables of one environment, so every worker process sees the same data and a
counter incremented by 50 children loses no update (LMDB serialises writers).

    from qpsmtpd_py.helpers.store import open_store
    table = open_store(self.app).table("greylist")
    table.set(key, b"1", ttl=3600)
    hits = table.incr(ip, ttl=60)

Why LMDB: readers never block, a write is one small transaction, and a process
killed with kill -9 in the middle of a write leaves the data intact (copy-on-write
pages, robust writer mutex); stale reader slots of dead processes are cleared at
open and every READER_CHECK_SECONDS.

An environment must never be used across fork(): the child closes what it
inherited (at-fork hook) and reopens lazily, so a Store or Table object may be
created anywhere, even in the master, and used in any process.

A store deleted or replaced under a running server (rm -r store_dir, a restore
moved into place, the directory turned into a file) is noticed within a second:
the identity (device, inode) of data.mdb is recorded when the store is first
opened (by check_store in the master at start-up, so every worker inherits it)
and checked when a process opens it and then at most every IDENTITY_CHECK_SECONDS
by the store's clock (a `stat`, not one per read: in a busy pre-forked server the
check cost more than the read). Then every operation raises StoreError (plugins
fail closed: 4xx, logged) until a restart or reload adopts the new store. Before,
workers created a new empty store while others kept the deleted one open, and a
used-up spam_gourmet address took mail.

Durability (config store_sync, default 1s): group commit (store_sync.py): commits
are not fsynced one by one, a thread fsyncs them within a second. A crashed
process loses nothing; a power loss loses at most about the last second.

Values carry an 8-byte header: the expiry time in milliseconds since the epoch
(big-endian, 0 = never). Expired entries are invisible; `expire()` deletes them.
"""

import atexit
import contextlib
import os
import pwd
import struct
import weakref
from operator import methodcaller

import lmdb

from ..clock import SYSTEM_CLOCK
from ..config import ConfigError
from .store_sync import STAMP, GroupCommit

DEFAULT_DIR = "/var/lib/qpsmtpd/store"
DEFAULT_MAP_SIZE = 64 << 20          # grows by doubling when full
DEFAULT_MAX_SIZE = 4 << 30           # refuse to grow past this (config store_max_size)
READER_CHECK_SECONDS = 30.0
IDENTITY_CHECK_SECONDS = 1.0         # data.mdb removed or replaced: noticed within this
BATCH = 1000                         # entries per transaction in scans
DELETE_BATCH = 200                   # expired entries deleted per write transaction
RECLAIM_EVERY = 64                   # at the size limit: look at the room every N writes,
RECLAIM_LIVE = 0.5                   # and when live pages fill this share of the map,
RECLAIM_SECONDS = 5.0                # delete expired entries (at most this often per process)
DEFAULT_SYNC = 1.0                   # store_sync: group commit every second (see above)

_NO_LOCK = contextlib.nullcontext()
_HEADER = struct.Struct(">Q")
_HLEN = _HEADER.size
_NEVER = _HEADER.pack(0)

_fork_generation = 0


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3      # glibc mallopt()
_MMAP_THRESHOLD = 1 << 20
_mmap_threshold_fixed = False


def _fix_mmap_threshold():
    """Keep LMDB's big per-environment buffer out of the heap. mdb_env_open callocs
    2 MB (its dirty-page list). glibc raises its mmap threshold to the size of any
    such block freed (a forked child closing the environment it inherited does), so
    the child's own calloc then came from the heap and was memset: 512 page faults
    and 2 MB of cache evicted per child start (bench/shared_state.py --procs 20
    -n 2000: 16.6 -> 11.5 faults a message). A fixed threshold of 1 MiB keeps that
    calloc an mmap (zero pages, given only when touched) and every smaller block,
    a 100 KB message's included, in the heap as before; the trim threshold is
    glibc's own rule, twice that. Once per process, before the first open."""
    global _mmap_threshold_fixed
    if _mmap_threshold_fixed:
        return
    _mmap_threshold_fixed = True
    try:
        import ctypes
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, 2 * _MMAP_THRESHOLD)
    except (OSError, AttributeError):    # not glibc: nothing to fix
        pass


def _after_fork_in_child():
    global _fork_generation
    _fork_generation += 1


os.register_at_fork(after_in_child=_after_fork_in_child)


class StoreError(ConfigError):
    """The store cannot be used (directory, permissions, size); the text names
    the directory and the fix."""


def _bytes(value, what="value"):
    if isinstance(value, str):                   # most keys: an IP, a triplet
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value).encode()
    raise TypeError(f"store {what} must be str or bytes, not {type(value).__name__}")


def _expiry(ttl, now):
    """ttl seconds from `now` (None = never) -> the 8-byte header."""
    if ttl is None:
        return _NEVER
    return _HEADER.pack(max(1, int((now + float(ttl)) * 1000)))


def _live(raw, now_ms):
    """The payload of a stored value, or None when it has expired."""
    expires = _HEADER.unpack_from(raw)[0]
    if expires and expires <= now_ms:
        return None
    return raw[_HLEN:]


def _pages(stat):
    return stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"]


def _with_ttl(result, ttl):
    """An update function's result -> (value, ttl): it may return (value, ttl)."""
    if isinstance(result, tuple):
        return result[0], result[1]
    return result, ttl


def _user():
    uid = os.geteuid()
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


_WRITTEN = weakref.WeakSet()         # stores this process wrote under group commit


@atexit.register
def _sync_at_exit():
    """A tool that wrote and exits (qpsmtpd-store ...) leaves nothing unsynced."""
    for store in list(_WRITTEN):
        try:
            store.flush()
        except (StoreError, OSError):
            pass


def _weak_sync(store):
    """Group commit's fsync for `store`, without keeping the store alive (its thread
    must not stop a dropped Store from closing)."""
    ref = weakref.ref(store)

    def sync():
        live = ref()
        if live is not None:
            live._sync_now()
    return sync


class Store:
    """One LMDB environment (a directory) with named tables.

    sync (config `store_sync`): a number N (default 1, `store_sync 1s`) is group
    commit: each process fsyncs at most N seconds after its writes, in a thread, so
    writers never wait for the disk and a power loss loses at most the last N
    seconds; True (`store_sync 1`) fsyncs each commit (a power loss loses at most
    the last transaction; every writer waits for the disk); False never fsyncs
    (as safe against crashed processes, but a crashed machine may lose recent
    writes). `clock` (qpsmtpd_py.clock) decides when entries expire; tests pass a
    fake one.
    """

    backend = "lmdb"

    def __init__(self, path, map_size=DEFAULT_MAP_SIZE, max_size=DEFAULT_MAX_SIZE,
                 sync=DEFAULT_SYNC, clock=SYSTEM_CLOCK):
        self.path = os.path.abspath(path)
        self._data_path = os.path.join(self.path, "data.mdb")
        self.clock = clock
        self.map_size = int(map_size)
        self.max_size = max(int(max_size), self.map_size)
        self.sync = sync
        self.sync_every = None if isinstance(sync, bool) else float(sync)
        self._group = None if self.sync_every is None else GroupCommit(
            self.path, self.sync_every, _weak_sync(self))
        if self._group is not None:
            _WRITTEN.add(self)
        self._env = None
        self._dbs = {}
        self._generation = None
        self._next_check = 0.0          # data.mdb's identity: checked again from then on
        self._next_reader_check = 0.0
        self._reclaiming = False
        self._writes = 0
        self._next_reclaim = 0.0
        self._identity = None           # (st_dev, st_ino) of data.mdb when first opened

    # -- the environment (per process) ---------------------------------------------
    def env(self):
        """The environment for this process: opened on first use, reopened after fork,
        checked (data.mdb's identity, dead readers) when the checks are due."""
        if (self._env is not None and self._generation == _fork_generation
                and self.clock.monotonic() < self._next_check):
            return self._env                     # the usual case: nothing to do
        if self._generation != _fork_generation:
            self._forget_inherited()
        if self._env is None:
            self._open()
        else:
            self._periodic_checks()
        return self._env

    def _periodic_checks(self):
        now = self.clock.monotonic()
        self._next_check = now + IDENTITY_CHECK_SECONDS
        self._check_identity()
        if now >= self._next_reader_check:
            self._reader_check()

    def adopt(self, tables=()):
        """Open the store now (creating it if need be) and take its data.mdb as the
        one to use: called at start-up and reload (check_store), in the master.
        `tables` are made now if missing: a plugin's tables then exist before its
        first read, which goes straight to its handle instead of first looking in
        the main db whether the table is there (a transaction more per read). The
        environment is closed again at once: the master serves no client, and a
        worker forked from it then has no inherited environment to close before it
        opens its own (it would cost every new worker ~0.15 ms)."""
        self._identity = None
        if self._generation != _fork_generation:
            self._forget_inherited()
        if self._env is not None:
            self.close()
        self._open()
        try:
            if tables:
                self._write_txn(lambda: self._make_tables(tables))
        finally:
            self.close()

    def _make_tables(self, names):
        env = self._env
        with env.begin(write=True) as txn:
            for name in names:
                env.open_db(str(name).encode("utf-8"), txn=txn, create=True)

    def _data_identity(self):
        try:
            st = os.stat(self._data_path)
        except (FileNotFoundError, NotADirectoryError):     # gone, or store_dir is a file now
            return None
        return st.st_dev, st.st_ino

    def _check_identity(self):
        """Fail closed when data.mdb is not the file this server started with."""
        if self._identity is None:
            return
        now = self._data_identity()
        if now == self._identity:
            return
        self.close()
        what = "removed" if now is None else "replaced by another file"
        raise StoreError(f"store_dir {self.path}: data.mdb was {what} while the server ran; "
                         "refusing to use the store (a new empty one would forget what was "
                         "stored). Fix: restore it, or restart (or HUP) the server to start "
                         "with the store now in place")

    def _forget_inherited(self):
        """LMDB handles must not cross fork: close what the parent opened (in the
        child that releases only the child's own fds and reader slots), then reopen."""
        self._generation = _fork_generation
        if self._group is not None:
            self._group.reset_after_fork()
        try:
            self.close()
        except lmdb.Error:
            pass

    def _open(self):
        if self._identity is None:
            self._check_dir()            # the first open: make the directory, or say why not
        else:
            self._check_identity()       # a worker: never recreate a store that was removed
        _fix_mmap_threshold()
        try:
            self._env = lmdb.open(
                self.path, map_size=self.map_size, max_dbs=256, max_readers=1024,
                sync=self.sync is True, metasync=False, readahead=False, mode=0o660,
                lock=True)
        except lmdb.Error as exc:
            raise StoreError(self._problem(f"cannot open the LMDB environment: {exc}"))
        self._generation = _fork_generation
        self._dbs = {}
        if self._group is not None:
            self._group.open_stamp()
        self._give_files_to_dir_owner()
        if self._identity is None:
            self._identity = self._data_identity()
        else:
            self._check_identity()       # replaced between the check and the open
        self._next_check = self.clock.monotonic() + IDENTITY_CHECK_SECONDS
        self._reader_check()

    def _check_dir(self):
        try:
            os.makedirs(self.path, mode=0o750, exist_ok=True)
        except OSError as exc:
            raise StoreError(self._problem(f"cannot create it: {exc.strerror}"))
        if not os.path.isdir(self.path):
            raise StoreError(self._problem("not a directory"))
        if not os.access(self.path, os.W_OK | os.X_OK):
            raise StoreError(self._problem(f"not writable by {_user()}"))

    def _give_files_to_dir_owner(self):
        """root (an admin running qpsmtpd-store, a master before dropping privileges)
        must not leave files the server's user cannot open."""
        if os.geteuid() != 0:
            return
        st = os.stat(self.path)
        if st.st_uid == 0:
            return
        for name in ("data.mdb", "lock.mdb", STAMP):
            path = os.path.join(self.path, name)
            try:
                if os.stat(path).st_uid == 0:
                    os.chown(path, st.st_uid, st.st_gid)
            except OSError:
                pass

    def _problem(self, reason):
        return (f"store_dir {self.path}: {reason}. Fix: create the directory and give it "
                f"to the user the server runs as (e.g. `install -d -o smtpd -m 750 "
                f"{self.path}`, and chown -R the files in it), or name a writable "
                f"directory in the config file store_dir")

    def _reader_check(self):
        """Free reader slots of processes that died (kill -9) so they cannot pin pages."""
        self._next_reader_check = self.clock.monotonic() + READER_CHECK_SECONDS
        try:
            self._env.reader_check()
        except lmdb.Error:
            pass

    def close(self):
        """Close the environment in this process (it reopens on next use), after
        fsyncing what group commit still owes. Safe on one inherited across fork
        too: only this process's handles are released."""
        group = self._group
        if group is not None and self._generation == _fork_generation:
            try:
                group.flush()
            except OSError:
                pass
        with group.io_lock if group is not None else _NO_LOCK:
            env, self._env, self._dbs = self._env, None, {}
            if env is not None:
                env.close()

    def flush(self):
        """fsync now what group commit still owes (tools before they exit)."""
        if self._group is not None:
            try:
                self._group.flush()
            except OSError as exc:
                raise StoreError(f"store_dir {self.path}: sync: {exc}") from None

    def __del__(self):
        """A Store dropped (a tool, a test opening the directory again) closes its
        environment at once, as py-lmdb's would, after fsyncing what it owes."""
        try:
            self.close()
        except Exception:
            pass

    def _sync_now(self):
        """Group commit's fsync (called with its io_lock held, so never on a closed env)."""
        env = self._env
        if env is not None:
            try:
                env.sync(True)
            except lmdb.Error as exc:
                raise OSError(f"{type(exc).__name__}: {exc}") from None

    # -- tables ---------------------------------------------------------------------------
    def table(self, name):
        # a new Table each time, not a cache: Store -> Table -> Store would be a cycle,
        # and a dropped Store must close its environment at once (see __del__)
        return Table(self, name)

    def tables(self):
        """Names of the tables that exist."""
        return sorted(key.decode("utf-8", "replace")
                      for key, _ in self.read(None, lambda txn: list(txn.cursor()), []))

    def expire(self):
        """Delete expired entries in every table; returns how many."""
        return sum(self.table(name).expire() for name in self.tables())

    def _db(self, name, create):
        """(env, db handle) for a table; db is None when it does not exist (and
        create is false)."""
        env = self.env()
        db = self._dbs.get(name)
        if db is not None or name is None:      # None: the main db, which lists the tables
            return env, db
        if not create:
            # A table nobody wrote yet (karma's, a bucket's on a calm server): look in
            # the main db, a read that takes no lock, instead of trying open_db, whose
            # write transaction would queue every connection for LMDB's writer lock.
            with env.begin() as txn:
                if txn.get(name.encode("utf-8")) is None:
                    return env, None
        # A handle opened in a read transaction does not outlive it (py-lmdb), so
        # open it in a (write) transaction of its own, once per process and table:
        # without changes its commit writes nothing.
        try:
            db = self._write_txn(lambda: env.open_db(name.encode("utf-8"), create=create))
        except lmdb.NotFoundError:
            return env, None
        self._dbs[name] = db
        return env, db

    # -- transactions with map growth ---------------------------------------------------------
    def _write_txn(self, func):
        """Run func() with map growth: on MapFullError double the map and retry;
        on MapResizedError (another process grew it) adopt the new size. Other
        LMDB failures (disk errors ...) become StoreError."""
        while True:
            try:
                return func()
            except lmdb.MapFullError:
                self._grow()
            except lmdb.MapResizedError:
                self._env.set_mapsize(0)
            except lmdb.NotFoundError:
                raise                            # a table that does not exist: see _db
            except lmdb.Error as exc:
                raise StoreError(f"store_dir {self.path}: {type(exc).__name__}: {exc}") from None

    def write(self, name, func, create=True, default=None):
        """func(txn) inside one write transaction on table `name` (created if
        missing, else default is returned); may run again if the map had to grow."""
        def attempt():
            env, db = self._db(name, create=create)
            if db is None:
                return default
            with env.begin(db=db, write=True) as txn:
                return func(txn)
        result = self._write_txn(attempt)
        if self._group is not None:
            try:
                self._group.written()
            except OSError as exc:
                raise StoreError(f"store_dir {self.path}: sync: {exc}") from None
        self._writes += 1
        if self._writes % RECLAIM_EVERY == 0 and not self._reclaiming:
            self._reclaim_early()
        return result

    def _reclaim_early(self):
        """At store_max_size, delete expired entries while the map still has room:
        LMDB needs free pages even to delete (in a full map nothing can be freed),
        and pages freed by one transaction are reused only a transaction later."""
        env = self._env
        if env is None or self.clock.monotonic() < self._next_reclaim:
            return
        info = env.info()
        if info["map_size"] < self.max_size:
            return
        psize = env.stat()["psize"]
        with env.begin() as txn:
            used = sum(_pages(txn.stat(db)) for db in self._dbs.values()) + _pages(txn.stat())
        if used * psize < info["map_size"] * RECLAIM_LIVE:
            return
        self._next_reclaim = self.clock.monotonic() + RECLAIM_SECONDS
        self._reclaiming = True
        try:
            self.expire()
        except StoreError:
            pass
        finally:
            self._reclaiming = False

    def read(self, name, func, default=None):
        """func(txn) inside one read transaction; default if the table does not exist."""
        while True:
            try:
                env, db = self._db(name, create=False)
                if db is None and name is not None:
                    return default
                with env.begin(db=db) as txn:
                    return func(txn)
            except lmdb.MapResizedError:
                self._env.set_mapsize(0)
            except lmdb.Error as exc:
                raise StoreError(f"store_dir {self.path}: {type(exc).__name__}: {exc}") from None

    def get_raw(self, name, key):
        """The stored bytes (expiry header included) of `key` in table `name`, or
        None: the read each stateful plugin makes at every connection. When the
        table's handle is known it is one short read transaction; else, and on any
        LMDB error, read(). In a busy pre-forked server the other workers keep the
        caches cold, and there the Python layers of read() cost as much as LMDB's
        own read."""
        try:
            env = self.env()                     # first: after a fork it forgets the handles
            db = self._dbs.get(name)
            if db is not None:
                with env.begin(db=db) as txn:
                    return txn.get(key)
        except lmdb.Error:
            pass                                 # read() retries, or says why
        return self.read(name, methodcaller("get", key))

    def _grow(self):
        env = self._env
        size = env.info()["map_size"]
        if size >= self.max_size and not self._reclaiming:
            # at the limit: expired entries are the room to use before giving up
            self._reclaiming = True
            try:
                freed = self.expire()
            finally:
                self._reclaiming = False
            if freed:
                return
        if size >= self.max_size:
            raise StoreError(
                f"store_dir {self.path}: the store is full ({size >> 10} KB, the limit set "
                f"by store_max_size). Fix: run `qpsmtpd-store expire`, or raise "
                f"store_max_size in the config directory")
        env.set_mapsize(min(size * 2, self.max_size))


class Table:
    """A named table; keys and values are str or bytes (returned as bytes)."""

    def __init__(self, store, name):
        name = str(name)
        if not name or "\0" in name or len(name.encode()) > 200:
            raise ValueError(f"bad store table name {name!r}")
        self.store = store
        self.name = name

    def _key(self, key):
        key = _bytes(key, "key")
        if not key or len(key) > 511:
            raise ValueError(f"store key must be 1-511 bytes, got {len(key)}")
        return key

    def _now_ms(self):
        return int(self.store.clock.time() * 1000)

    def get(self, key, default=None):
        # the hot path of every stateful plugin (reads at each connection): no
        # callback, the expiry checked after the read transaction
        raw = self.store.get_raw(self.name, self._key(key))
        value = None if raw is None else _live(raw, self._now_ms())
        return default if value is None else value

    def set(self, key, value, ttl=None):
        """Store value; ttl in seconds (None: keep it until deleted)."""
        key = self._key(key)
        raw = _expiry(ttl, self.store.clock.time()) + _bytes(value)
        self.store.write(self.name, lambda txn: txn.put(key, raw))

    def delete(self, key):
        """Remove key; True if it existed (and had not expired)."""
        key = self._key(key)
        now = self._now_ms()

        def delete(txn):
            raw = txn.pop(key)
            return raw is not None and _live(raw, now) is not None
        return self.store.write(self.name, delete, create=False, default=False)

    def incr(self, key, n=1, ttl=None):
        """Add n to a decimal counter (missing or expired counts as 0); returns the
        new value. ttl applies when the counter is created: a live counter keeps
        its expiry (a fixed window)."""
        key = self._key(key)
        now = self.store.clock.time()

        def incr(txn):
            raw = txn.get(key)
            value = _live(raw, int(now * 1000)) if raw is not None else None
            if value is None:
                header, count = _expiry(ttl, now), n
            else:
                header, count = raw[:_HLEN], int(value or 0) + n
            txn.put(key, header + str(count).encode())
            return count
        return self.store.write(self.name, incr)

    def update(self, key, func, ttl=None):
        """Atomic read-modify-write: new = func(old bytes or None); a None result
        deletes the key. The new value keeps the old expiry unless ttl is given;
        func may also return (new, ttl) to choose the expiry from what it read.
        func may be called again if the transaction is retried: keep it pure.
        Returns the new value."""
        key = self._key(key)
        now = self.store.clock.time()

        def update(txn):
            raw = txn.get(key)
            old = _live(raw, int(now * 1000)) if raw is not None else None
            new, new_ttl = _with_ttl(func(old), ttl)
            if new is None:
                if raw is not None:
                    txn.delete(key)
                return None
            new = _bytes(new)
            header = raw[:_HLEN] if (old is not None and new_ttl is None) else _expiry(new_ttl, now)
            txn.put(key, header + new)
            return new
        return self.store.write(self.name, update)

    def items(self, prefix=b""):
        """(key, value) of live entries whose key starts with prefix, in key order."""
        for key, value, _ in self.entries(prefix):
            yield key, value

    def entries(self, prefix=b""):
        """(key, value, expires_at or None) of live entries, read in batches so no
        read transaction stays open while the caller works."""
        prefix = _bytes(prefix, "prefix")
        start, skip_start = prefix, False
        while True:
            now = self._now_ms()
            batch = self.store.read(self.name, lambda txn: self._scan(txn, start, skip_start, prefix, now), [])
            for entry in batch:
                if entry[1] is not None:
                    yield entry
            if len(batch) < BATCH:
                return
            start, skip_start = batch[-1][0], True

    @staticmethod
    def _scan(txn, start, skip_start, prefix, now):
        out = []
        cursor = txn.cursor()
        if not cursor.set_range(start):
            return out
        for key, raw in cursor:
            if not key.startswith(prefix):
                break
            if skip_start and key == start:
                continue
            expires = _HEADER.unpack_from(raw)[0]
            if expires and expires <= now:
                out.append((key, None, None))        # keeps the batch position
            else:
                out.append((key, raw[_HLEN:], expires / 1000.0 if expires else None))
            if len(out) >= BATCH:
                break
        return out

    def expire(self):
        """Delete expired entries; returns how many. Scans in read transactions and
        deletes in short write transactions, so writers are never blocked for long."""
        removed = 0
        start, skip_start = b"", False
        while True:
            now = self._now_ms()
            batch = self.store.read(self.name, lambda txn: self._scan(txn, start, skip_start, b"", now), [])
            dead = [key for key, value, _ in batch if value is None]
            for i in range(0, len(dead), DELETE_BATCH):     # small write transactions: each
                part = dead[i:i + DELETE_BATCH]                # needs few free pages in a full map
                removed += self.store.write(self.name, lambda txn: self._delete_expired(txn, part, now))
            if len(batch) < BATCH:
                return removed
            start, skip_start = batch[-1][0], True

    @staticmethod
    def _delete_expired(txn, keys, now):
        count = 0
        for key in keys:
            raw = txn.get(key)
            if raw is not None and _live(raw, now) is None:   # still expired?
                txn.delete(key)
                count += 1
        return count


# -- the per-process store of a server ------------------------------------------------------
_STORES = {}


def _size(text, name):
    text = str(text).strip().lower()
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    try:
        if text and text[-1] in units:
            return int(float(text[:-1]) * units[text[-1]])
        return int(text)
    except ValueError:
        raise ConfigError(f"{name}: '{text}' is not a size (bytes, or with k/m/g)")


def store_settings(app):
    """(path, map_size, max_size, sync) from the config files store_dir,
    store_map_size, store_max_size, store_sync."""
    config = app.config
    path = config.get("store_dir") or DEFAULT_DIR
    map_size = _size(config.get("store_map_size") or DEFAULT_MAP_SIZE, "store_map_size")
    max_size = _size(config.get("store_max_size") or DEFAULT_MAX_SIZE, "store_max_size")
    sync = _sync(config.get("store_sync"))
    return str(path), map_size, max_size, sync


def _sync(value):
    """store_sync: 'Ns' (group commit within N s; default 1s), 1/yes (every
    commit), 0/no (never)."""
    text = str(value if value is not None else f"{DEFAULT_SYNC:g}s").strip().lower()
    if text.endswith("s") and text[:-1].replace(".", "", 1).isdigit():
        return max(0.001, float(text[:-1]))
    if text in ("1", "yes", "true", "on"):
        return True
    if text in ("0", "no", "false", "off"):
        return False
    raise ConfigError(f"store_sync: '{text}' is not 1, 0 or a number of seconds like 1s")


def redis_settings(config):
    """(address, prefix, timeout, default ttl) from the config files store_redis,
    store_redis_prefix, store_redis_timeout, store_redis_ttl."""
    from . import store_redis as R
    address = str(config.get("store_redis") or "127.0.0.1:6379")
    prefix = str(config.get("store_redis_prefix") or R.DEFAULT_PREFIX)
    try:
        timeout = float(config.get("store_redis_timeout") or R.DEFAULT_TIMEOUT)
        ttl = float(config.get("store_redis_ttl") or R.DEFAULT_TTL)
    except ValueError:
        raise ConfigError("store_redis_timeout and store_redis_ttl are seconds")
    return address, prefix, timeout, ttl


def make_store(config, clock=SYSTEM_CLOCK, log=None):
    """A new Store of the backend the config chooses: `store_backend` lmdb (default,
    store_dir ...) or redis (store_redis ...). Both give the same tables."""
    backend = str(config.get("store_backend") or "lmdb").strip().lower()
    if backend == "redis":
        from .store_redis import RedisStore
        address, prefix, timeout, ttl = redis_settings(config)
        return RedisStore(address, prefix, timeout, ttl, clock=clock, log=log)
    if backend != "lmdb":
        raise ConfigError(f"store_backend: '{backend}' is not lmdb or redis")

    class _App:
        pass
    app = _App()
    app.config = config
    path, map_size, max_size, sync = store_settings(app)
    return Store(path, map_size, max_size, sync, clock)


def redis_store(app, address):
    """A Redis store at `address` for one plugin (greylisting's `redis` argument),
    whatever the server's store_backend; shared per process and address."""
    from .store_redis import RedisStore
    key = ("redis", str(address))
    store = _STORES.get(key)
    if store is None:
        _, prefix, timeout, ttl = redis_settings(app.config)
        store = _STORES[key] = RedisStore(address, prefix, timeout, ttl,
                                          clock=getattr(app, "clock", SYSTEM_CLOCK),
                                          log=_store_logger(app))
    return store


def _store_logger(app):
    from ..constants import LOGNOTICE
    return lambda text: app.log(LOGNOTICE, f"store: {text}")


def open_store(app):
    """The Store of this server (config store_backend: LMDB in store_dir, or Redis),
    shared by every plugin of the process (the same object for the app's life, so a
    plugin may keep a Table of it made in register())."""
    store = getattr(app, "_store", None)
    if store is None:
        config = app.config
        clock = getattr(app, "clock", SYSTEM_CLOCK)
        if str(config.get("store_backend") or "lmdb").strip().lower() == "redis":
            key = ("redis",) + redis_settings(config)
            store = _STORES.get(key)
            if store is None:
                store = _STORES[key] = make_store(config, clock, _store_logger(app))
        else:
            path, map_size, max_size, sync = store_settings(app)
            key = os.path.realpath(path)
            store = _STORES.get(key)
            if store is None:
                store = _STORES[key] = Store(path, map_size, max_size, sync, clock)
        app._store = store
    return store


def check_store(app, *tables):
    """For a plugin's register(): stop start-up with a clear message when the
    store is unusable (LMDB: the directory; Redis: the settings and the Python
    package; a Redis server that is down only disables the plugins' use of it).
    LMDB: the store is opened (made) now and its data.mdb adopted, so a store
    removed or replaced later is refused rather than silently recreated; the
    plugin's `tables` are made now (empty), so its reads find them at once.
    Returns the store: a plugin may keep its Table (`store.table(name)`) for its
    hooks, which saves making one at every connection."""
    store = open_store(app)
    store._check_dir()
    if isinstance(store, Store):
        store.adopt(tables)
    return store
