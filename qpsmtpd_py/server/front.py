"""The prefork front: new connections wait in the master's event loop, costing a
file descriptor, not a worker (Postfix's postscreen, issue 16 point 1).

While the pool is calm the workers accept on the plain listeners themselves
(accept_mode.py). Once the pool reaches its reserve line, or a worker passes back a
client whose IP is at --max-from-ip, the master accepts on them (not SMTPS, not
PROXY: those need a handshake or header first and always go to the workers
directly) and decides per client:

* calm (no stress, a worker idle beyond the fifth of the pool kept for clients
  that have sent a command, the client's IP under --max-from-ip): the socket goes
  to an idle worker at once, before any greeting, and the session is exactly as
  without a front (pre-connection and connect hooks, then the 220);
* otherwise the front greets the client itself (after waiting out the earlytalker
  plugin's delay, noting whether the client spoke first) and reads until the
  client has sent its first complete command line. Only then does it pass the
  socket, with the bytes read, to a worker (SCM_RIGHTS over the worker's own unix
  socket), preferring clients whose IP holds the fewest workers. The worker runs
  the pre-connection and connect hooks as always (same connection, same notes);
  a refusal from them is the answer to that first command.

Silent clients and clients dripping bytes therefore never hold a worker: they
wait here until the time-out (stress_timeout in stress, else timeout; in stress a
command line must also be complete within 3 s of its first byte) and get 421.
One IP may have at most `front_max_per_ip` (limits.py, default 50) connections
waiting here; past that a new one is answered 421 4.7.0 and closed at once, so a
single address cannot take the master's file descriptors (postscreen's
postscreen_client_connection_count_limit). The 127.0.0.1 and ::1 clients are
exempt from both caps (the host itself: content filters, local submission), as
Postfix exempts $mynetworks.
"""

import collections
import json
import re
import resource
import selectors
import socket
import time

from .. import constants as C
from ..limits import STRESS_LINE_TIME, policy
from ..session import greeting_text
from .connect import peer_ip

NEW, EARLY, GREETED, READY = "new", "early", "greeted", "ready"
NEW_GRACE = 0.25          # s a new client may wait for a worker before we greet it,
GROW_GRACE = 2.0          # or this long when a worker is being forked for it
READY_WAIT = 300.0        # s a client that has sent its command may wait for a worker
READ_MAX = 8192           # bytes read here at most (a command line is 512)
EXEMPT = frozenset(("127.0.0.1", "::1"))
ACCEPT_BATCH = 64
USAGE_HALF_LIFE = 30.0    # s: how fast an IP's count of recent hand-offs fades
CAP_LOG_EVERY = 60.0      # s: an IP refused by front_max_per_ip is logged this often
_HELLO = re.compile(rb"(EHLO|HELO) ", re.I)   # how a real client's first command starts


class Held:
    """A client the front holds."""

    __slots__ = ("sock", "ip", "state", "since", "buffer", "early", "greet_at",
                 "first", "ready_at", "hello", "watched")

    def __init__(self, sock, ip, now):
        self.sock = sock
        self.ip = ip
        self.state = NEW
        self.since = now
        self.buffer = bytearray()
        self.early = False
        self.greet_at = None
        self.first = None             # when the first byte after the greeting came
        self.ready_at = None
        self.hello = False            # its first command is EHLO or HELO
        self.watched = False          # registered with the selector (being read)


class Front:
    def __init__(self, master, listeners, clock=time.monotonic):
        self.master = master
        self.clock = clock
        self.listeners = list(listeners)
        self.selector = selectors.DefaultSelector()
        self.listening = False
        self.listen(True)
        self.held = {}                # fd -> Held
        self.per_ip = collections.Counter()   # IP -> clients held now
        self.capped = {}              # IP -> when its refusal was last logged
        self.capacity = _capacity(master.max_children)
        self.stats = collections.Counter()
        self.usage = collections.Counter()    # IP -> hand-offs lately (halved every 30 s)
        self.usage_decayed = clock()

    def fileno(self):
        return self.selector.fileno()

    def listen(self, on):
        """Accept new clients here (True), or leave them to the children while the
        pool is calm (accept_mode.py)."""
        if on == self.listening:
            return
        for listener in self.listeners:
            if on:
                self.selector.register(listener.sock, selectors.EVENT_READ, listener)
            else:
                self.selector.unregister(listener.sock)
        self.listening = on

    def adopt(self, sock, ip):
        """A client a child accepted and passed back (its IP had --max-from-ip
        children): held as if accepted here."""
        sock.setblocking(False)
        held = self._hold(sock, ip, self.clock())
        if held is not None:
            self._watch([held])

    # -- what the master asks --------------------------------------------------------------
    def waiting_for_worker(self):
        """Clients a worker should be found for now (new ones, and those ready)."""
        return sum(1 for h in self.held.values() if h.state in (NEW, READY))

    def waiting(self):
        """Clients held longer than a moment (a new one waits NEW_GRACE for a
        worker before it counts: a child being forked is no sign of stress)."""
        now = self.clock()
        return sum(1 for h in self.held.values() if h.state != NEW or now - h.since >= NEW_GRACE)

    def close_all(self, why="shutting down"):
        """On stop: every held client gets 421 and is closed."""
        for held in list(self.held.values()):
            self._drop(held, f"421 4.3.2 {self.master.app.me} {why}")
        for listener in self.listeners:
            try:
                self.selector.unregister(listener.sock)
            except (KeyError, ValueError, OSError):
                pass
        self.listening = False

    # -- one round of the event loop ---------------------------------------------------------
    def run(self, stressed):
        """Accept, read, greet, time out and hand off; returns seconds until the next
        timer (for the master's wait)."""
        now = self.clock()
        accepted = []
        for key, _ in self.selector.select(0):
            if key.data is None:
                self._read(self.held.get(key.fd), now, stressed)
            else:
                self._accept(key.data, now, accepted)
        self._hand_off(now, stressed)
        self._watch(accepted)
        return self._timers(self.clock(), stressed)

    # -- accepting ---------------------------------------------------------------------------
    def _accept(self, listener, now, accepted):
        for _ in range(ACCEPT_BATCH):
            sock, peer = listener.accept(blocking=False)
            if sock is None:
                return
            held = self._hold(sock, peer_ip(peer), now)
            if held is not None:
                accepted.append(held)

    def _hold(self, sock, ip, now):
        """A new client held here, or None when it was refused (421) for the
        front's capacity or front_max_per_ip."""
        app = self.master.app
        if len(self.held) >= self.capacity:
            self.stats["refused_full"] += 1
            say(sock, busy_reply(app.me))
            sock.close()
            return None
        per_ip = policy(app).front_max_per_ip
        if per_ip and ip not in EXEMPT and self.per_ip[ip] >= per_ip:
            self._refuse_ip(sock, ip, per_ip, now)
            return None
        held = Held(sock, ip, now)
        self.held[sock.fileno()] = held
        self.per_ip[ip] += 1
        return held

    def _watch(self, accepted):
        """Read the clients accepted in this round that are still here (most go to an
        idle child at once: they never cost an epoll registration)."""
        for held in accepted:
            if self.held.get(held.sock.fileno()) is held:
                self.selector.register(held.sock, selectors.EVENT_READ, None)
                held.watched = True

    def _refuse_ip(self, sock, ip, cap, now):
        """One IP already has `cap` clients waiting here: 421 and closed; logged
        at most once a minute per IP (a reconnect loop is not a log flood)."""
        app = self.master.app
        self.stats["refused_ip"] += 1
        say(sock, f"421 4.7.0 {app.me} Error: too many connections from {ip}")
        sock.close()
        if now - self.capped.get(ip, now - CAP_LOG_EVERY) >= CAP_LOG_EVERY:
            if len(self.capped) > 10000:
                self.capped.clear()
            self.capped[ip] = now
            app.log(C.LOGNOTICE, f"front: {ip} has {cap} connections waiting "
                                 f"(front_max_per_ip); refusing more with 421")

    # -- reading -----------------------------------------------------------------------------
    def _read(self, held, now, stressed):
        if held is None:
            return
        try:
            data = held.sock.recv(READ_MAX)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(held)             # the client went away
            return
        held.buffer += data
        if held.state in (NEW, EARLY):
            held.early = True            # it spoke before the greeting
            if len(held.buffer) >= READ_MAX:
                self._pause(held)
            return
        if held.first is None:
            held.first = now
        if b"\n" in held.buffer or len(held.buffer) >= READ_MAX:
            self._ready(held, now)

    def _ready(self, held, now):
        """A complete first command: wait for a worker, no more reading here."""
        held.state, held.ready_at = READY, now
        held.hello = bool(_HELLO.match(held.buffer))
        self._pause(held)

    def _pause(self, held):
        """Stop reading this client (the worker reads the rest). Only what is
        registered is unregistered: the selector's error for anything else formats
        the socket's repr (getsockname and enum conversions)."""
        if held.watched:
            held.watched = False
            try:
                self.selector.unregister(held.sock)
            except (KeyError, ValueError):
                pass

    # -- greeting ----------------------------------------------------------------------------
    def _greet(self, held, now):
        app = self.master.app
        if not say(held.sock, f"220 {greeting_text(app)}"):
            self._drop(held)
            return
        held.state = GREETED
        held.greet_at = now
        self.stats["greeted"] += 1
        if b"\n" in held.buffer:         # an early talker's pipelined command
            self._ready(held, now)

    def greeting_delay(self):
        """The earlytalker wait (a plugin's `greeting_delay`): the front holds the
        greeting that long and notes whether the client talked first."""
        return max((getattr(p, "greeting_delay", 0) or 0 for p in self.master.app.plugins),
                   default=0)

    # -- handing off -------------------------------------------------------------------------
    def _hand_off(self, now, stressed):
        if not any(h.state in (NEW, READY) for h in self.held.values()):
            return
        idle = self.master.idle_slots()
        busy = self.master.busy_by_ip()
        limit = self.master.max_conn_ip
        self._decay(now)
        # clients that said EHLO or HELO first (what real clients do; an empty line
        # or other noise goes last), then fair shares: the IPs holding the fewest
        # children, then those served least lately; a newcomer is not queued behind a
        # flood's many connections
        usage = self.usage
        ready = sorted((h for h in self.held.values() if h.state == READY),
                       key=lambda h: (not h.hello, busy[h.ip], usage[h.ip], h.ready_at))
        new = sorted((h for h in self.held.values() if h.state == NEW), key=lambda h: h.since)
        # clients that have said EHLO/HELO first; the others, and new ones (only when
        # calm), never take the children kept for the former (master.direct_room)
        room = self.master.direct_room()
        for held in ready + ([] if stressed else new):
            if not idle:
                break
            unproven = held.state == NEW or not held.hello
            if unproven and room <= 0:
                break
            if held.ip not in EXEMPT and limit and busy[held.ip] >= limit:
                continue
            slot = idle[0]
            if self._give(held, slot):
                idle.pop(0)
                busy[held.ip] += 1
                room -= unproven
        grace = GROW_GRACE if self.master.growing() else NEW_GRACE
        for held in new:                 # not handed off: greet them after the grace
            if held.state != NEW or held.sock.fileno() < 0:
                continue
            over_limit = held.ip not in EXEMPT and limit and busy[held.ip] >= limit
            if stressed or over_limit or now - held.since >= grace:
                delay = self.greeting_delay()
                if delay > 0:
                    held.state, held.greet_at = EARLY, now + delay
                else:
                    self._greet(held, now)

    def _give(self, held, slot):
        greeted = held.state == READY
        meta = {"greeted": greeted, "early": held.early if greeted else None}
        # the bytes read go along: the first command, or what an early talker sent
        message = json.dumps(meta).encode() + b"\n" + bytes(held.buffer)
        if not self.master.hand_off(slot, held.sock, message, held.ip):
            return False
        self.stats["handed_greeted" if greeted else "handed_direct"] += 1
        self.usage[held.ip] += 1
        self._forget(held)
        held.sock.close()                # the worker has its own copy now
        return True

    def _decay(self, now):
        if now - self.usage_decayed < USAGE_HALF_LIFE:
            return
        self.usage_decayed = now
        self.usage = collections.Counter({ip: n // 2 for ip, n in self.usage.items() if n > 1})

    # -- timers ------------------------------------------------------------------------------
    def _timers(self, now, stressed):
        """Greet early-talk waits that are over, time out silent and slow clients;
        returns seconds until the next thing to do."""
        app = self.master.app
        limits = policy(app)
        wait = limits.wait(stressed)
        nearest = 1.0
        for held in list(self.held.values()):
            if held.state == NEW:
                due = held.since + NEW_GRACE     # at the latest: looked at again then
            elif held.state == EARLY:
                if now >= held.greet_at:
                    self._greet(held, now)
                    continue
                due = held.greet_at
            elif held.state == GREETED:
                due = held.greet_at + wait
                why = "timeout"
                if stressed and held.first is not None and held.first + STRESS_LINE_TIME < due:
                    due, why = held.first + STRESS_LINE_TIME, "too slow"
                if now >= due:
                    self.stats["timed_out"] += 1
                    self._drop(held, f"421 4.4.2 {app.me} Error: timeout exceeded")
                    app.log(C.LOGINFO, f"front: {held.ip} sent no command in time ({why}"
                            f"{', stress' if stressed else ''}); closed")
                    continue
            else:                        # READY: waiting for a worker
                due = held.ready_at + min(READY_WAIT, limits.timeout)
                if now >= due:
                    self.stats["busy"] += 1
                    self._drop(held, busy_reply(app.me))
                    app.log(C.LOGNOTICE, f"front: no worker for {held.ip} within "
                            f"{due - held.ready_at:g}s; closed with 421")
                    continue
            nearest = min(nearest, due - now)
        return max(0.0, nearest)

    def _forget(self, held):
        self._pause(held)
        if self.held.pop(held.sock.fileno(), None) is not None:
            left = self.per_ip[held.ip] = self.per_ip[held.ip] - 1
            if left <= 0:
                del self.per_ip[held.ip]

    def _drop(self, held, reply=None):
        if reply:
            say(held.sock, reply)
        self._forget(held)
        try:
            held.sock.close()
        except OSError:
            pass


def busy_reply(me):
    """The 421 for a client no worker can take."""
    return f"421 4.3.2 {me} Service busy, try again later"


def say(sock, line):
    """One reply line, never blocking; False when it could not be sent."""
    try:
        data = (line + "\r\n").encode("utf-8", "surrogateescape")
        return sock.send(data) == len(data)
    except OSError:
        return False


def _capacity(workers):
    """Clients the front may hold: the descriptor limit (raised to its hard limit)
    less a reserve for the master's own files and the workers' sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        try:
            target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return max(16, soft - 128 - 2 * workers)
