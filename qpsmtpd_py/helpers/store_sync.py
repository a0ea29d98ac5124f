"""Group commit for the LMDB store (config store_sync Ns, the default 1s).

Commits are not fsynced one by one: each fsync would wait for the disk while the
committing process holds LMDB's single writer lock, so all workers together could
write only a few hundred times a second. Instead a thread in each writing process
fsyncs the data file at most `every` seconds after that process's last commit
(Redis' appendfsync everysec). A crashed process loses nothing (its commits are in
the page cache); a power loss loses at most about the last `every` seconds.

One fsync covers every process's commits (it flushes the file), so the processes
share a stamp file `sync.stamp` in the store directory: the monotonic time at
which the latest fsync started. A process whose commits all came before that time
skips its own; with 60 workers writing, the store is fsynced about once a second
rather than 60 times.
"""

import os
import signal
import struct
import threading
import time
import weakref

STAMP = "sync.stamp"
_NS = struct.Struct("=q")
_ALL = weakref.WeakSet()


def _before_fork():
    """No fork while a syncer is inside env.sync: py-lmdb counts operations in flight,
    and a child closing the inherited environment would wait for that one forever."""
    for group in list(_ALL):
        group.io_lock.acquire()


def _after_fork_in_parent():
    for group in list(_ALL):
        group.io_lock.release()


def _after_fork_in_child():
    for group in list(_ALL):
        group.reset_after_fork()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                    after_in_child=_after_fork_in_child)


class GroupCommit:
    """The fsync duty of one process for one store; `sync()` is env.sync(True)."""

    def __init__(self, directory, every, sync):
        self.path = os.path.join(directory, STAMP)
        self.every = float(every)
        self.sync = sync
        self.lock = threading.Lock()      # the fields below (held only for moments)
        # an fsync vs the store closing its environment; reentrant: a Store dropped while
        # its syncer runs is finalised (and closed) in that thread, inside the fsync's lock
        self.io_lock = threading.RLock()
        self.thread = None                # runs while commits wait for their fsync
        self.last_write = 0               # monotonic ns of this process's latest commit
        self.error = None                 # an fsync failure, raised at the next commit
        self.fd = None
        _ALL.add(self)

    def reset_after_fork(self):
        """The parent's thread is not in the child (the parent syncs its own commits)."""
        self.lock, self.io_lock = threading.Lock(), threading.RLock()
        self.close()
        self.thread, self.last_write, self.error = None, 0, None

    def written(self):
        """After a commit: a thread will see it fsynced within `every` seconds.
        Raises the error of a failed fsync (once) as OSError."""
        with self.lock:
            self.last_write = time.monotonic_ns()
            if self.thread is None:
                # the thread must not take the signals the engine's alarms rely on
                blocked = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
                try:
                    self.thread = threading.Thread(target=self._run, daemon=True,
                                                   name="store-sync")
                    self.thread.start()
                finally:
                    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            error, self.error = self.error, None
        if error is not None:
            raise error

    def pending(self):
        return self.last_write != 0

    def _run(self):
        """Every `every` seconds: fsync what this process committed meanwhile, unless
        another process's fsync started after it; end after a quiet period."""
        while True:
            time.sleep(self.every)
            with self.lock:
                if not self.last_write:
                    self.thread = None
                    return
            try:
                self.flush()
            except OSError as exc:
                with self.lock:
                    self.error = exc

    def flush(self):
        """fsync now what this process still owes (the thread; the store before it
        closes). Commits meanwhile are not held up: they wait for the next round."""
        with self.lock:
            written = self.last_write
        if not written:
            return
        with self.io_lock:
            if self._stamp() <= written:         # else another process's fsync covered it
                start = time.monotonic_ns()
                self.sync()
                self._set_stamp(start)
        with self.lock:
            if self.last_write == written:
                self.last_write = 0

    def open_stamp(self):
        """Open (make) the stamp file; the store calls it when it opens, before it
        gives its files to the directory's owner."""
        if self.fd is None:
            try:
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o660)
            except OSError:
                pass                             # (then this process always fsyncs)

    def _stamp(self):
        try:
            self.open_stamp()
            if self.fd is None:
                return 0
            data = os.pread(self.fd, _NS.size, 0)
        except OSError:
            return 0                             # no stamp: always fsync ourselves
        return _NS.unpack(data)[0] if len(data) == _NS.size else 0

    def _set_stamp(self, start):
        if self.fd is None:
            return
        try:
            if start > self._stamp():
                os.pwrite(self.fd, _NS.pack(start), 0)
        except OSError:
            pass

    def close(self):
        fd, self.fd = self.fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
