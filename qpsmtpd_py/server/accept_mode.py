"""Who accepts new clients on the plain listeners: the children themselves while the
pool is calm (as with --no-front: no master in the path, one process woken per
client), or the master's front once a child finds the pool near its reserve or a
client's IP at --max-from-ip (front.py: silent and dripping clients then cost a
descriptor, not a child).

Shared by the master and every child: one byte of shared memory (the mode) and a
lock. A child accepts, and marks itself busy, holding the lock; so does every
change of mode. The room check under it is therefore exact: no two children can
both take the last child outside the reserve. The lock is a POSIX record lock on
a memfd: owned per process, so it is released when its holder exits or is killed.
"""

import contextlib
import fcntl
import mmap
import os

DIRECT, FRONT = 0, 1


class AcceptMode:
    def __init__(self):
        self.mem = mmap.mmap(-1, 1)
        self.mem[0] = FRONT              # the front until the master has seen calm
        self.lock_fd = os.memfd_create("qpsmtpd-accept", os.MFD_CLOEXEC)
        os.ftruncate(self.lock_fd, 1)

    def __call__(self):
        return self.mem[0]

    def set(self, mode):
        self.mem[0] = mode

    @contextlib.contextmanager
    def locked(self):
        """Held by a child while it accepts and marks itself busy (a short wait:
        no plugin runs under it)."""
        fcntl.lockf(self.lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(self.lock_fd, fcntl.LOCK_UN)

    def try_lock(self):
        """The master never waits (a child stopped under the lock must not stop it):
        True when it got the lock; release with unlock()."""
        try:
            fcntl.lockf(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        return True

    def unlock(self):
        fcntl.lockf(self.lock_fd, fcntl.LOCK_UN)
