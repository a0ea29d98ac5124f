"""Deadlines that interrupt whatever the process is doing: one SIGALRM timer
shared by everyone who needs one (a plugin call's limit, an orphaned child's last
seconds).

Why signals: a plugin blocked in a network call (an LDAP server, a next hop or a
scanner that drips a byte now and then) cannot be asked to stop; the timer's
handler runs in the main thread as soon as the blocking call returns to Python
(a recv is interrupted with EINTR and the handler runs before it is retried).

Each process has one ITIMER_REAL; `add()` keeps every pending deadline and sets
the timer for the earliest. A forked child starts with none (timers are not
inherited, and the list is dropped in the child). Only the main thread
can take signals: elsewhere `add()` returns None and nothing is armed.
"""

import os
import signal
import threading
import time
import weakref


class _Alarms:
    def __init__(self):
        self.pending = {}            # token -> (monotonic deadline, callback)
        self.pid = None
        self.counter = 0

    def add(self, seconds, callback):
        """Call `callback()` (from the signal handler) in `seconds`; a token for
        cancel(), or None when not on the main thread."""
        if threading.current_thread() is not threading.main_thread():
            return None
        if self.pid != os.getpid():
            self.pid = os.getpid()
            self.pending = {}
            signal.signal(signal.SIGALRM, self._fire)
        self.counter += 1
        self.pending[self.counter] = (time.monotonic() + max(0.0, seconds), callback)
        self._rearm()
        return self.counter

    def cancel(self, token):
        if token is not None and self.pid == os.getpid() and self.pending.pop(token, None):
            self._rearm()

    def _rearm(self):
        if not self.pending:
            signal.setitimer(signal.ITIMER_REAL, 0)
            return
        left = min(when for when, _ in self.pending.values()) - time.monotonic()
        signal.setitimer(signal.ITIMER_REAL, max(left, 0.001))

    def _fire(self, signum, frame):
        now = time.monotonic()
        due = [token for token, (when, _) in self.pending.items() if when <= now + 0.0005]
        callbacks = [self.pending.pop(token)[1] for token in due]
        self._rearm()
        timed_out = None
        for callback in callbacks:
            try:
                callback()
            except CallTimeout as exc:   # raised into the interrupted code, last
                timed_out = exc
        if timed_out is not None:
            raise timed_out

    def forked(self):
        """In a new child: no timer is running (they are not inherited)."""
        self.pid = None
        self.pending = {}


ALARMS = _Alarms()
_LIMITS = weakref.WeakSet()          # every CallLimit: its timer is gone in a forked child


def _forked():
    ALARMS.forked()
    for limit in list(_LIMITS):
        limit.token = None


os.register_at_fork(after_in_child=_forked)


class CallTimeout(BaseException):
    """A plugin call ran over its limit. A BaseException, so a plugin's own
    `except Exception` around its network call does not swallow it; hooks.py
    catches it around each plugin call."""


class CallLimit:
    """One plugin call may go `seconds` without calling keepalive() (hooks.py runs
    each call between start() and stop());
    0 = no limit. Nested calls (a logging hook inside another hook) run under the
    outer limit.

    Cheap per call (hooks run tens of times per message): start() and stop() only
    set fields. The timer is armed when a call starts and none of ours is pending,
    and is never cancelled; when it fires it looks at the call in progress, if any:
    no call, and it lapses; a call that started or said keepalive() since, and it
    is set again for what that call has left; a call silent for `seconds`, and
    CallTimeout is raised into it."""

    def __init__(self, seconds=0):
        self.seconds = seconds
        self.active = False
        self.renewed = 0.0
        self.token = None                # our pending timer (None: none is pending)
        _LIMITS.add(self)

    def renew(self):
        """The plugin shows progress (Plugin.keepalive via app.keepalive)."""
        if self.active:
            self.renewed = time.monotonic()

    def start(self):
        """A plugin call begins; True when this call is the one limited (call
        stop() after it), False for a nested call or no limit."""
        if self.active or not self.seconds or self.seconds <= 0:
            return False
        self.renewed = time.monotonic()
        self.active = True               # before the check: a timer firing now re-arms
        if self.token is None:
            self.token = ALARMS.add(self.seconds, self._expired)
            if self.token is None:       # not the main thread: no limit
                self.active = False
                return False
        return True

    def again(self):
        """What comes next (the next call of a chain, the deny/ok hooks after one) gets
        the whole limit: renewed, or started anew when a timeout ended the timer.
        True while the caller holds the timer (call stop() at the end)."""
        if self.active:
            self.renewed = time.monotonic()
            return True
        return self.start()

    def stop(self):
        self.active = False              # the pending timer finds no call and lapses

    def _expired(self):
        self.token = None
        if not self.active or not self.seconds or self.seconds <= 0:   # no call, or no limit now
            self.active = False
            return
        left = self.renewed + self.seconds - time.monotonic()
        if left > 0.001:
            self.token = ALARMS.add(left, self._expired)
            return
        self.active = False
        raise CallTimeout(f"made no progress for {self.seconds:g}s")
