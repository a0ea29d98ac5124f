"""A child whose master has died: notice at once, let go of the listening
sockets, and end the session in progress within a bound.

Without this a child kept serving its client, and holding the listening socket,
for as long as the client liked after `kill -9` of the master: a restart failed
with `Address already in use` and new clients sat unanswered in the backlog.

The kernel tells us: right after fork the child asks for SIGTERM when its parent
dies (prctl PR_SET_PDEATHSIG, Linux). The handler sees that the parent is gone
(getppid() changed), so the child closes its listeners at once; an idle child
just leaves, a busy one may finish its session within `bound` seconds (the
--graceful-timeout), after which it answers `421` and exits. On systems without
prctl the prefork child's once-a-second getppid() check remains.
"""

import ctypes
import os
import signal

from ..alarm import ALARMS

PR_SET_PDEATHSIG = 1
DEATH_SIGNAL = signal.SIGTERM

try:            # looked up once, in the master: a child only calls it (less memory per child)
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _prctl = None                # not Linux: the getppid() checks have to do


def ask_for_death_signal(master_pid, signum=DEATH_SIGNAL):
    """In a new child: have the kernel send `signum` when the master dies. Returns
    True when the master is already gone (it died before we asked)."""
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0)
    return orphaned(master_pid)


def orphaned(master_pid):
    return os.getppid() != master_pid


class SessionBound:
    """Once the master is gone, the session in progress gets `seconds` more; then
    `expire()` runs (from the shared SIGALRM timer, alarm.py) and must end the
    process."""

    def __init__(self, seconds, expire):
        self.seconds = max(0.001, float(seconds))
        self.expire = expire
        self.armed = False

    def arm(self):
        if not self.armed:
            self.armed = True
            ALARMS.add(self.seconds, self.expire)


def cut_session(sock, me, log):
    """Tell the client we are going (421, best effort, never blocking) and log it."""
    log("master gone: ending the session after the grace period")
    if sock is None:
        return
    try:
        sock.setblocking(False)
        sock.send(f"421 4.3.2 {me or 'qpsmtpd'} shutting down\r\n".encode("ascii", "replace"))
    except OSError:
        pass
