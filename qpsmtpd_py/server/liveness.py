"""Liveness: a child proves it is alive by making progress; a stuck one is ended
with a stack dump in the log.

Progress is bytes moving to or from the client (channel.py reports every read and
write) and keepalive() calls from plugins doing long work (a scan, a forward).
Each costs one clock reading; at most once per interval the child writes the time
into its scoreboard slot (Heartbeat). SMTP commands are not the measure: one DATA
upload on a slow link may take far longer than any command should.

The master (Watchdog) looks about once a second at every child that is starting
or busy. One whose heartbeat is older than the limit (2 x the SMTP timeout) is
stuck: the master sends it DUMP_SIGNAL, on which faulthandler, armed in every
child right after fork, writes each thread's Python stack into that child's dump
file (a memfd the master made before the fork and reads back). GRACE seconds later
the master logs the dump and kills the child with SIGKILL, which also closes its
client's connection. faulthandler works at C level, so the dump comes even from a
child stuck in a C call, where no Python signal handler would run. A child that
dies of a fatal signal on its own (SIGSEGV in an extension) leaves its stack in the
same file; it is logged when the child is reaped.

This is gunicorn's arbiter model (worker heartbeat, SIGABRT, then SIGKILL) with the
heartbeat in the shared scoreboard. SIGUSR2 replaces SIGABRT because faulthandler
can only dump on SIGABRT by also killing the process with it (and leaving a core).
"""

import faulthandler
import os
import signal
import time

from .scoreboard import BUSY, STARTING

DUMP_SIGNAL = signal.SIGUSR2
GRACE = 1.0                  # seconds between the dump signal and SIGKILL
DUMP_MAX = 256 * 1024        # bytes of a stack dump that are logged at most


def limit_for(timeout):
    """Seconds without progress after which a child counts as stuck."""
    return 2 * timeout


def heartbeat_interval(timeout):
    """How often a busy child writes its heartbeat: at least four times per limit,
    at most once a second."""
    return min(1.0, limit_for(timeout) / 4)


class Heartbeat:
    """The child's half: called at every read, write and keepalive(); calls `beat`
    (the scoreboard write) at most once per `interval` seconds."""

    __slots__ = ("beat", "interval", "clock", "due")

    def __init__(self, beat, interval=1.0, clock=time.monotonic):
        self.beat = beat
        self.interval = interval
        self.clock = clock
        self.due = 0.0

    def __call__(self):
        now = self.clock()
        if now >= self.due:
            self.due = now + self.interval
            self.beat()


class Watchdog:
    """The master's half: finds stuck children on the scoreboard, keeps each child's
    dump file, and says when a dumped child's grace period is over."""

    def __init__(self, board, clock=time.monotonic, grace=GRACE):
        self.board = board
        self.clock = clock
        self.grace = grace
        self.dumps = {}          # pid -> dump file descriptor
        self.ending = {}         # pid -> when the dump signal was sent
        self.dump_slot = None    # the fd faulthandler writes to (arm_master)

    # -- forking (Master.fork) -------------------------------------------------------------
    def before_fork(self):
        """A dump file for the child about to be forked."""
        return os.memfd_create("qpsmtpd-stack", os.MFD_CLOEXEC)

    def forked(self, pid, fd):
        self.dumps[pid] = fd

    def fork_failed(self, fd):
        os.close(fd)

    def arm_master(self):
        """Once, before the first fork: faulthandler set up on a reserved descriptor
        (/dev/null in the master), so a child only points that descriptor at its own
        dump file. Setting faulthandler up in every child cost ~150 KB of private
        memory per child (issue 15, bench/forkserver_cost.py)."""
        self.dump_slot = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        self._enable(self.dump_slot)

    def arm_child(self, fd):
        """In the new child: drop the other children's files, dump into our own on
        DUMP_SIGNAL (the process goes on) and on a fatal signal."""
        for other in self.dumps.values():
            os.close(other)
        self.dumps = {}
        self.ending = {}
        if self.dump_slot is None:
            self._enable(fd)
        else:
            os.dup2(fd, self.dump_slot, inheritable=False)
            os.close(fd)

    @staticmethod
    def _enable(fd):
        faulthandler.enable(file=fd, all_threads=True)
        faulthandler.register(DUMP_SIGNAL, file=fd, all_threads=True, chain=False)

    # -- watching (Master.kill_hung) -------------------------------------------------------
    def stuck(self, children, limit):
        """[(pid, record, state, ip, silent seconds)] of the children that are starting
        or busy with no heartbeat for over `limit` seconds, not already being ended."""
        now = self.clock()
        states = self.board.states()
        found = []
        for pid, record in children.items():
            if states[record.slot] not in (STARTING, BUSY) or pid in self.ending:
                continue
            _, state, since, ip = self.board.read(record.slot)
            if state not in (STARTING, BUSY) or since <= 0 or now - since <= limit:
                continue
            # confirm with a second read: a write racing the first may look stale
            if self.board.read(record.slot)[1:3] == (state, since):
                found.append((pid, record, state, ip, now - since))
        return found

    def dumping(self, pid):
        """The dump signal has just been sent to `pid`."""
        self.ending[pid] = self.clock()

    def due(self):
        """Children whose grace period is over: SIGKILL them now."""
        now = self.clock()
        return [pid for pid, sent in self.ending.items() if now - sent >= self.grace]

    def next_due(self):
        """Seconds until the next grace period ends (None when none runs), so the
        master's loop can wake in time."""
        if not self.ending:
            return None
        return max(0.0, min(self.ending.values()) + self.grace - self.clock())

    def take_dump(self, pid):
        """The stack dump `pid` left (text, maybe ""); the file is closed."""
        self.ending.pop(pid, None)
        fd = self.dumps.pop(pid, None)
        if fd is None:
            return ""
        try:
            data = os.pread(fd, DUMP_MAX, 0)
        finally:
            os.close(fd)
        return data.replace(b"\0", b"").decode("utf-8", "replace").rstrip()
