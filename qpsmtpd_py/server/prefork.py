"""`qpsmtpd-prefork`: a master and a pool of pre-forked children.

Each idle child waits (epoll) on the shared listening sockets and serves one SMTP
session at a time, up to --max-requests sessions, then exits and is replaced.
The master keeps --idle-children spare children: a child that accepts a client
marks itself busy on the scoreboard and, when that leaves the pool short of
spare children, writes one byte to the master's nudge pipe, so the master wakes
at once and forks another (never more than --children in all). While it has to
grow, it forks ahead of demand: up to --idle-children plus half as many spare
children as are busy. Surplus idle children are retired one a second, once the
pool has not grown for --max-idle seconds (warm children are kept between
bursts, as Postfix's max_idle does).

A pool of at least --idle-children does not grow while its busy children free up
fast enough that every waiting client gets one within --grow-wait (estimated from
how long their sessions last, scoreboard.py): on a burst of quick local sessions
more processes would only share the same CPUs, each with its own cold caches, and
every message would cost more. So it holds back only while the CPUs are busy; remote
clients' sessions last long and leave them idle, so the pool grows for them as before.

On the plain listeners the children accept new clients themselves while the pool
is calm, under a shared lock that keeps the reserve exact (accept_mode.py); once
busy children reach the reserve line, or a client's IP has --max-from-ip
children, the master's front takes over (front.py, postscreen's way): it hands
new clients to an idle child at once while there is room, and under stress or
past --max-from-ip greets them and hands them to a child only once they have
sent a complete command, so silent and dripping clients never hold a child. A
calm second later the children accept again. SMTPS and PROXY listeners are
always accepted by the children. The master sets the stress flag (shared memory)
that tightens the session limits (limits.py) when the pool is nearly full and
clients are waiting, and logs each change.

Signals to the master: HUP reloads config and plugins (children with a session
finish it on the old configuration, idle ones are replaced at once); TERM/INT
stop accepting and give running sessions --graceful-timeout seconds; USR1 makes
plugins reopen their log files. A child that dies is replaced; one that makes no
progress (no byte to or from its client, no plugin keepalive) for twice the SMTP
timeout, while starting or serving, has its stack logged and is killed
(liveness.py).
"""

import collections
import json
import math
import os
import random
import select
import signal
import socket
import struct
import sys
import time
import traceback

from .. import constants as C
from ..app import early_log
from . import daemon
from .accept_mode import DIRECT, FRONT, AcceptMode
from .connect import Handoff, peer_ip, serve_client
from .front import EXEMPT, Front, busy_reply, say
from .liveness import Heartbeat, Watchdog, heartbeat_interval
from .common import ServerArgumentParser
from .master import (EX_USAGE, Master, add_common_options, add_max_idle_option, check_max_idle,
                     finish_common_options, reopen_logs)
from .orphan import SessionBound, cut_session, orphaned
from .scoreboard import BUSY, IDLE, STARTING, Scoreboard
from .shared_flag import SharedFlag

PROG = "qpsmtpd-prefork"


def parse_args(argv):
    parser = ServerArgumentParser(
        prog=PROG,
        description="Pre-forking qpsmtpd daemon: a pool of child processes, each "
                    "serving one SMTP session at a time.",
        epilog="Signals: HUP reload, TERM/INT graceful stop, USR1 reopen logs. "
               "The manual (options, signals, systemd units) is docs/servers.md in the "
               "qpsmtpd_py source, installed by scripts/install as "
               "/usr/share/doc/qpsmtpd-py/servers.md; `qpsmtpd-doc NAME` shows a plugin's.")
    add_common_options(parser, default_port=25, max_from_ip="a quarter of --children, at least 2")
    parser.add_argument("--children", type=int, default=15, metavar="N",
                        help="maximum number of children (default 15)")
    parser.add_argument("--idle-children", type=int, default=5, metavar="N",
                        help="spare children kept waiting (default 5; 0 = --children)")
    parser.add_argument("--max-requests", type=int, default=100, metavar="N",
                        help="sessions a child serves before it is replaced (default 100)")
    parser.add_argument("--max-requests-jitter", type=int, default=None, metavar="N",
                        help="each child serves up to N more sessions than --max-requests, "
                             "a random number per child, so children are not all replaced "
                             "at once (default: a tenth of --max-requests; 0 = off)")
    parser.add_argument("--grow-wait", type=float, default=GROW_WAIT, metavar="SECONDS",
                        help="a pool of at least --idle-children does not grow while the "
                             "busy children free up fast enough that waiting clients get "
                             f"one within this time (default {GROW_WAIT}; 0 = grow at once)")
    add_max_idle_option(parser, "surplus idle children (beyond --idle-children) are retired, one "
                                "a second, once the pool has not grown for this long")
    parser.add_argument("--renice-parent", type=int, default=5, metavar="N",
                        help="when started as root, the master runs N nice levels higher "
                             "priority than its children (default 5; 0 = off)")
    parser.add_argument("--pretty-child", action="store_true",
                        help="idle children show 'qpsmtpd child' as process title")
    parser.add_argument("--no-front", dest="front", action="store_false",
                        help="children always accept connections themselves, also past "
                             "the reserve line (no front in the master: silent clients "
                             "then hold a child each)")
    args = finish_common_options(parser.parse_args(argv))
    if args.children < 1:
        parser.error("--children must be at least 1")
    if args.idle_children <= 0 or args.idle_children > args.children:
        args.idle_children = args.children
    if not args.max_from_ip_given:
        args.max_from_ip = default_max_from_ip(args.children)
    if args.max_from_ip == 0:
        args.max_from_ip = args.children
    if args.max_requests < 1:
        parser.error("--max-requests must be at least 1")
    check_max_idle(parser, args)
    if args.grow_wait < 0:
        parser.error("--grow-wait must not be negative")
    if args.max_requests_jitter is None:
        args.max_requests_jitter = args.max_requests // 10
    if args.max_requests_jitter < 0:
        parser.error("--max-requests-jitter must not be negative")
    return args


def reserve_line(children):
    """Busy children past which a new client gets no child before its greeting: a
    fifth of --children (with 5 or more) stays for clients the front has greeted and
    heard a command from, so silent ones arriving while the pool is calm cannot take
    every child."""
    return children - children // 5


def default_max_from_ip(children):
    """Well below the pool: a quarter of --children, at least 2 (3 of the default 15)."""
    return max(2, children // 4)


def stress_threshold(children):
    """Busy children from which the pool is under stress (with clients waiting)."""
    return max(1, math.ceil(0.8 * children))


ACK = struct.Struct("=H")        # a child's slot, written to the status pipe when it takes a hand-off
STRESS_MIN_SECONDS = 2.0         # stress stays on at least this long (no flapping)
CALM_SECONDS = 1.0               # the front hands new clients back to the children after this
CALM_LOOK = 0.25                 # how often the master looks for calm while the front accepts
GROW_WAIT = 0.1                  # --grow-wait: how long a waiting client may wait for a busy child
_TCP_INFO_QUEUE = struct.Struct("=24xI")   # a listening socket's tcp_info: tcpi_unacked = accept queue
_CPUS = len(os.sched_getaffinity(0))
# the runnable-task count's source; QPSMTPD_LOADAVG names a file in its format, so a
# test can set the machine's load instead of depending on it
LOADAVG = os.environ.get("QPSMTPD_LOADAVG", "/proc/loadavg")


def cpus_busy():
    """At least as many runnable tasks as CPUs besides the caller (/proc/loadavg's
    fourth field, this moment's count): another child would only take turns with
    them. With a CPU free, a new child costs no one anything and spares the waiting
    clients the wait. Unknown counts as busy."""
    try:
        with open(LOADAVG, "rb") as fh:
            running = int(fh.read().split()[3].split(b"/")[0])
    except (OSError, IndexError, ValueError):
        return True
    return running - 1 >= _CPUS


class ChildRecord:
    """What the master knows of one child."""

    __slots__ = ("slot", "generation", "born", "retiring", "killed")

    def __init__(self, slot, generation):
        self.slot = slot
        self.generation = generation
        self.born = time.monotonic()
        self.retiring = False
        self.killed = False


class PreforkMaster(Master):
    prog = PROG
    default_port = 25

    def __init__(self, args):
        super().__init__(args)
        self.max_children = args.children
        self.idle_target = args.idle_children
        self.board = Scoreboard(args.children)
        self.watchdog = Watchdog(self.board)
        self.generation = 0
        # children write their slot here when they take a handed-off client: read on
        # every wake-up, never waited on (the master is awake for each hand-off anyway)
        self.status_pipe = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        # a child writes a byte here to wake the master only when it has something to
        # do: the child accepted a client itself and the pool is short of spare
        # children, or went idle while clients wait in the front (a calm or full pool
        # costs the master no wake-up per connection)
        self.nudge_pipe = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.worker = None                # the Worker being forked
        self.last_shrink = 0.0
        self.last_grow = 0.0              # warm children stay --max-idle s after a burst
        self.max_idle = args.max_idle
        self.next_spawn = 0.0
        self.backoff = 0.0
        self.shown_status = None
        self.reniced = False
        self.stress = SharedFlag()
        self.front_waiting = SharedFlag()  # clients wait in the front for a child
        # the master holds back forking (--grow-wait) and looks again on its own: a
        # child that accepts a client then need not wake it
        self.holding = SharedFlag()
        self.grow_wait = args.grow_wait
        self.waiting = 0                  # clients waiting for a busy child, while holding
        self.cpu_free_looks = 0           # looks in a row that found a CPU free
        self.accept_mode = AcceptMode()   # who takes new plain clients: children or the front
        self.calm_since = 0.0
        # a child passes back a client it accepted whose IP already has --max-from-ip
        # children (the front holds it); SOCK_SEQPACKET keeps each message whole
        self.passback = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        for end in self.passback:            # a master behind on reading costs a 421, not a hung child
            end.setblocking(False)
        self.stress_since = 0.0
        self.front = None                 # front.Front over the plain listeners
        self.handoffs = {}                # slot -> the master's end of that child's socket
        self.assigned = {}                # slot -> IP handed to it, until the child says busy
        self.reap_due = True

    # -- start-up -------------------------------------------------------------------------------
    def before_privilege_drop(self):
        if self.args.renice_parent and os.geteuid() == 0:
            try:
                os.nice(-self.args.renice_parent)
                self.reniced = True
            except OSError as exc:
                self.log(C.LOGWARN, f"--renice-parent: {exc.strerror}")

    def run(self):
        self.start()
        self.start_front()
        self.freeze()
        self.manage()
        self.notifier.ready(self.status_text())
        self.show_status()
        next_reap = 0.0
        front_due = 1.0
        while not self.stopping:
            timeout = self.wake_within(min(1.0, front_due,
                                           max(0.0, self.next_spawn - time.monotonic()) or 1.0))
            due = self.notifier.watchdog_timeout()
            if due is not None:
                timeout = min(timeout, due)
            if self.front is not None and self.accept_mode() == FRONT:
                timeout = min(timeout, CALM_LOOK)    # when does the pool become calm?
            if self.holding():
                timeout = min(timeout, self.grow_wait / 4)   # do the waiting clients still fit?
            fds = [self.nudge_pipe[0]] + ([self.front, self.passback[0]] if self.front else [])
            ready = self.wait(timeout, fds)
            if self.nudge_pipe[0] in ready:
                _drain(self.nudge_pipe[0])
            if self.front is not None:
                self.read_acks()
                if self.passback[0] in ready:
                    self.take_passed_back()
                self.follow_accept_mode()
            now = time.monotonic()
            if self.reap_due or now >= next_reap:
                self.reap_due = False
                next_reap = now + 1.0
                self.reap()
            if self.stopping:
                break
            if self.front is not None:
                front_due = self.front.run(self.stress())
            self.update_stress()
            self.kill_hung()
            self.manage()
            self.show_status()
            self.notifier.ping_watchdog()
        self.finish_stop()
        return 0

    def check_plugins(self):
        if not self.args.front:          # with the front, --max-from-ip needs no plugin
            super().check_plugins()

    def on_signal(self, signum):
        if signum == signal.SIGCHLD:
            self.reap_due = True
        super().on_signal(signum)

    # -- the front ----------------------------------------------------------------------------
    def start_front(self):
        """The master takes the plain listeners (front.py); the children keep the
        SMTPS and PROXY ones. --no-front: the children take every listener."""
        plain = [l for l in self.listeners if not l.smtps and not getattr(l, "proxy", False)]
        if self.args.front and plain:
            self.front = Front(self, plain)
            self.app.stress = self.stress
            self.log(C.LOGINFO, f"front: holding new clients on {', '.join(l.name for l in plain)}; "
                     f"at most {self.max_conn_ip} children per client IP")

    def follow_accept_mode(self):
        """The front listens while a child has found the pool near its reserve (or a
        client at --max-from-ip), until the pool has been calm for CALM_SECONDS;
        then the children accept again, and the master sleeps through each new
        client (accept_mode.py)."""
        if self.stopping:
            return
        mode = self.accept_mode
        now = time.monotonic()
        if mode() == FRONT:
            if not self.front.listening:     # a child handed over just now
                self.front.listen(True)
                self.calm_since = now
            if not self.calm():
                self.calm_since = now
            elif now - self.calm_since >= CALM_SECONDS and mode.try_lock():
                try:
                    self.read_acks()
                    if self.calm():          # again, now that no child can accept
                        mode.set(DIRECT)
                        self.front.listen(False)
                finally:
                    mode.unlock()
                if mode() == DIRECT:
                    self.log(C.LOGDEBUG, "front: pool calm, children accept new clients")
                    self.nudge_idle_children()

    def calm(self):
        """Nothing for the front to do: no client held or being handed over, no
        stress, a child free outside the reserve, no earlytalker delay (only the
        front can hold the greeting back)."""
        return (not self.front.held and not self.assigned and not self.stress()
                and self.direct_room() > 0 and not self.front.greeting_delay())

    def nudge_idle_children(self):
        """Wake the idle children (an empty message on their hand-off sockets) so
        they take the listeners into their epoll again."""
        states = self.board.states()
        for slot, end in self.handoffs.items():
            if states[slot] == IDLE:
                try:
                    end.send(b"")
                except OSError:
                    pass

    def take_passed_back(self):
        while True:
            try:
                message, fds, _, _ = socket.recv_fds(self.passback[0], 256, 1)
            except (BlockingIOError, InterruptedError):
                return
            for fd in fds:
                sock = socket.socket(fileno=fd)
                if self.stopping:
                    sock.close()
                else:
                    self.front.adopt(sock, message.decode("ascii", "replace"))
            if not fds:
                return

    def direct_listeners(self):
        """The listeners the children accept on themselves."""
        if self.front is None:
            return self.listeners
        return [l for l in self.listeners if l not in self.front.listeners]

    def idle_slots(self):
        """Slots of idle children of this generation that nothing is handed to."""
        states = self.board.states()
        return [r.slot for r in self.children.values()
                if states[r.slot] == IDLE and r.generation == self.generation
                and not r.retiring and r.slot not in self.assigned and r.slot in self.handoffs]

    def growing(self):
        """A child is starting, or one can still be forked: a new client is better
        off waiting a moment for it than greeted by the front."""
        return len(self.children) < self.max_children or STARTING in self.board.states()

    def direct_room(self):
        """How many more new clients may go to a child before their greeting
        (reserve_line), less the clients handed over and not yet taken."""
        return reserve_line(self.max_children) - self.board.totals()[BUSY] - len(self.assigned)

    def busy_by_ip(self):
        """{ip: children serving it}, handed-off clients not yet picked up included."""
        counts = collections.Counter(self.board.busy_addrs())
        counts.update(self.assigned.values())
        return counts

    def hand_off(self, slot, sock, message, ip):
        """Pass a client's socket (and what the front read) to the child in `slot`."""
        end = self.handoffs.get(slot)
        if end is None:
            return False
        try:
            socket.send_fds(end, [message], [sock.fileno()])
        except OSError as exc:
            self.log(C.LOGWARN, f"front: cannot hand {ip} to the child in slot {slot}: {exc}")
            return False
        self.assigned[slot] = ip
        return True

    def read_acks(self):
        """Children write their slot number when they take a client: that child is
        busy now (and the pool may have to grow)."""
        try:
            while True:
                data = os.read(self.status_pipe[0], 4096)
                if not data:
                    return
                for (slot,) in ACK.iter_unpack(data[:len(data) - len(data) % ACK.size]):
                    self.assigned.pop(slot, None)
        except BlockingIOError:
            pass

    def update_stress(self):
        """Stress: at least 80% of --children busy while clients wait in the front.
        Tightens the limits of every session (limits.py)."""
        waiting = self.front.waiting() if self.front else 0
        if not waiting and not self.stress():
            return                       # calm, and nothing to count
        counts = self.board.totals()
        busy = counts[BUSY]
        on = busy >= stress_threshold(self.max_children) and waiting > 0
        now = time.monotonic()
        if on == self.stress():
            if on:
                self.stress_since = now
            return
        if not on and now - self.stress_since < STRESS_MIN_SECONDS:
            return
        self.stress.set(on)
        self.stress_since = now
        if on:
            self.log(C.LOGWARN, f"stress: {busy} of {self.max_children} children busy, "
                     f"{waiting} clients waiting: shorter time-outs and lower error limits")
        else:
            self.log(C.LOGNOTICE, f"stress over: {busy} of {self.max_children} children busy")

    def begin_stop(self, why):
        if self.front is not None:
            self.front.close_all()
        super().begin_stop(why)

    # -- the pool ---------------------------------------------------------------------------------
    def manage(self):
        """Fork children until --idle-children are spare (within --children), or
        retire one surplus idle child per second."""
        now = time.monotonic()
        current = {pid: r for pid, r in self.children.items()
                   if r.generation == self.generation and not r.retiring}
        counts = self.board.counts(r.slot for r in current.values())
        # clients handed to a child that has not said busy yet are not spare; clients
        # waiting in the front want a child each
        spare = counts[IDLE] + counts[STARTING] - len(self.assigned)
        held = self.front.waiting_for_worker() if self.front else 0
        self.front_waiting.set(held > 0)
        target = self.idle_target + held
        need = min(target - spare, self.max_children - len(self.children))
        holding = need > 0 and self.busy_children_suffice(current, held)
        self.holding.set(holding)
        if holding:
            return
        if need > 0:
            # ahead of demand: while clients keep arriving, keep half as many spare
            # children as are busy (a burst finds them forked and warm)
            need = min(max(need, counts[BUSY] // 2 + target - spare),
                       self.max_children - len(self.children))
            if now >= self.next_spawn:
                self.last_grow = now
                for _ in range(need):
                    self.spawn()
            return
        if (spare > self.idle_target and now - self.last_shrink >= 1.0
                and now - self.last_grow >= self.max_idle):
            for pid, record in current.items():
                if self.board.read(record.slot)[1] == IDLE and record.slot not in self.assigned:
                    self.last_shrink = now
                    record.retiring = True
                    self.signal_children(signal.SIGTERM, [pid])
                    break

    def busy_children_suffice(self, current, held):
        """--grow-wait: the pool has --idle-children at least, its busy children, at
        the rate their sessions end (Scoreboard.turnover), free up one for every
        waiting client, and one more, within grow_wait seconds, and the CPUs are busy.
        `held`: the clients waiting in the front. A pool below --idle-children, or
        with no busy child, grows as before."""
        if not self.grow_wait or len(current) < self.idle_target:
            return False
        busy, rate = self.board.turnover(r.slot for r in current.values())
        if not busy:
            return False
        waiting = self.queued() + held
        self.waiting = waiting
        if rate * self.grow_wait < waiting + 1:
            return False
        # a CPU free at two looks in a row (one moment's count is noisy): fork after all
        self.cpu_free_looks = 0 if cpus_busy() else self.cpu_free_looks + 1
        return self.cpu_free_looks < 2

    def queued(self):
        """Connections in the kernel's accept queues, not yet taken by anyone."""
        total = 0
        for listener in self.listeners:
            try:
                info = listener.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO,
                                                _TCP_INFO_QUEUE.size)
                total += _TCP_INFO_QUEUE.unpack(info)[0]
            except (OSError, struct.error):
                pass                     # not TCP: only the front's count
        return total

    def spawn(self):
        slot = self.board.claim()
        if slot is None:
            return
        self.worker = Worker(self, slot)
        pair = None
        if self.front is not None:
            # the child's own socket for handed-off clients (SOCK_SEQPACKET keeps each
            # message, and the descriptor it carries, whole)
            pair = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            pair[0].setblocking(False)
            self.worker.handoff = pair[1]
        try:
            pid = self.fork()
        except OSError as exc:
            self.board.release(slot)
            for end in pair or ():
                end.close()
            self.log(C.LOGERROR, f"cannot fork a child: {exc.strerror}")
            self.next_spawn = time.monotonic() + 1.0
            return
        if pid == 0:
            if pair is not None:
                pair[0].close()
            self.worker.run()            # never returns
        if pair is not None:
            pair[1].close()
            old = self.handoffs.pop(slot, None)
            if old is not None:
                old.close()
            self.handoffs[slot] = pair[0]
        self.board.set_pid(slot, pid)
        self.children[pid] = ChildRecord(slot, self.generation)
        self.worker = None

    def install_child_signals(self):
        self.worker.install_signals()

    def child_gone(self, pid, record, status):
        self.board.release(record.slot)
        self.assigned.pop(record.slot, None)
        end = self.handoffs.pop(record.slot, None)
        if end is not None:
            end.close()                  # a client still queued there is closed with it
        if failed_by_itself(status) and not record.killed and not self.stopping \
                and time.monotonic() - record.born < 1.0:
            # dying at birth (a broken post-fork hook?): do not fork in a tight loop
            self.backoff = min(max(self.backoff * 2, 0.1), 10.0)
            self.next_spawn = time.monotonic() + self.backoff
            self.log(C.LOGERROR, f"child {pid} died right after start; next fork in {self.backoff:.1f}s")
        elif not failed_by_itself(status):
            # a clean exit, or killed from outside (kill -9, the OOM killer): the
            # child did nothing wrong, so its replacement comes at once
            self.backoff = 0.0
            self.next_spawn = 0.0

    def after_reload(self):
        """Children forked from now on get the new configuration; the others finish
        what they are doing and exit."""
        self.generation += 1
        old = [pid for pid, r in self.children.items() if not r.retiring]
        for pid in old:
            self.children[pid].retiring = True
        self.signal_children(signal.SIGHUP, old)
        self.freeze()

    # -- status -----------------------------------------------------------------------------------
    def status_text(self):
        counts = self.board.totals()
        text = (f"{len(self.children)} children, {counts[BUSY]} busy, "
                f"{counts[IDLE] + counts[STARTING]} idle")
        if self.holding():               # --grow-wait: the busy children will take them
            text += f", {self.waiting} waiting"
        return text

    def show_status(self):
        text = self.status_text()
        if text != self.shown_status:
            self.shown_status = text
            daemon.set_title(f"{PROG} master: {text}")
            self.notifier.status(text)


class Worker:
    """A child: waits for a client, serves it, and goes back to waiting."""

    def __init__(self, master, slot):
        self.master = master
        self.slot = slot
        self.board = master.board
        self.listeners = master.listeners
        self.master_pid = os.getpid()
        # drawn in the master, so every child gets its own number
        self.max_requests = master.args.max_requests + random.randint(0, master.args.max_requests_jitter)
        self.stop = False
        self.reopen = False
        self.busy = False
        self.client_ip = ""
        self.client = None
        self.bound = SessionBound(master.args.graceful_timeout, self.master_gone)
        self.handoff = None               # our end of the socket the front passes clients on

    def install_signals(self):
        self.wake = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.wake[1], warn_on_full_buffer=False)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self.on_stop)
        signal.signal(signal.SIGUSR1, self.on_usr1)

    def on_stop(self, signum, frame):
        """TERM, INT or HUP: finish the session in progress, then exit. TERM also
        comes when the master dies (orphan.py): then let go of the listeners at once
        and give the session in progress --graceful-timeout seconds."""
        self.stop = True
        if orphaned(self.master_pid):
            self.bound.arm()
            for listener in self.listeners:
                listener.close()
        elif self.busy:
            for listener in self.listeners:
                listener.close()

    def master_gone(self):
        """The grace period after the master's death is over: 421 and leave."""
        cut_session(self.client, self.app.me,
                    lambda msg: self.app.log(C.LOGWARN, f"{msg} ({self.client_ip or 'idle'})"))
        self.master.child_exit(1)

    def on_usr1(self, signum, frame):
        self.reopen = True

    def title(self, text):
        daemon.set_title(f"{PROG} child: {text}")

    def run(self):
        """The child's whole life; ends the process."""
        code = 0
        try:
            self.setup()
            served = 0
            while not self.stop and served < self.max_requests:
                self.idle()
                client, peer, listener = self.accept()
                if client is not None:
                    served += 1
                    self.serve(client, peer, listener)
                if self.reopen:
                    self.reopen = False
                    reopen_logs(self.app)
        except BaseException:            # never let a child return into the master's code
            code = 1
            sys.stderr.write(f"{os.getpid()} {PROG} child failed:\n{traceback.format_exc()}")
        finally:
            self.master.child_exit(code)

    def setup(self):
        master = self.master
        os.close(master.status_pipe[0])
        os.close(master.nudge_pipe[0])
        self.status_fd = master.status_pipe[1]
        self.nudge_fd = master.nudge_pipe[1]
        self.drop_masters_sockets()
        self.app = master.app
        self.app.on_command = self.on_command
        self.app.heartbeat = Heartbeat(lambda: self.board.heartbeat(self.slot),
                                       heartbeat_interval(self.app.timeout))
        if master.reniced:
            try:
                os.nice(master.args.renice_parent)
            except OSError:
                pass
        # epoll, with the listeners EPOLLEXCLUSIVE: a new client wakes one idle child,
        # not all of them (each but one would find nothing to accept)
        self.poller = select.epoll()
        self.poller.register(self.wake[0], select.EPOLLIN)
        self.by_fd = {}
        for listener in master.direct_listeners():
            if listener.fileno() < 0:
                continue                 # closed: the master died while we started
            self.poller.register(listener.fileno(), select.EPOLLIN | _EPOLLEXCLUSIVE)
            self.by_fd[listener.fileno()] = listener
        if self.handoff is not None:
            self.poller.register(self.handoff.fileno(), select.EPOLLIN)
        # the front's listeners: in our epoll too while the pool is calm (accept_mode.py)
        self.front_fds = {}
        if master.front is not None:
            self.front_fds = {l.fileno(): l for l in master.front.listeners if l.fileno() >= 0}
        self.direct = False
        self.app.stress = master.stress
        self.app.hooks.run("post-fork", None)

    def drop_masters_sockets(self):
        """What the master holds is not ours: the clients waiting in its front (else
        closing one there would not end its connection), the front's selector, the
        other children's hand-off sockets, its end of the pass-back socket."""
        master = self.master
        front = master.front
        if front is not None:
            for held in front.held.values():
                held.sock.close()
            front.selector.close()
        for end in master.handoffs.values():
            end.close()
        master.passback[0].close()

    def idle(self):
        self.busy = False
        self.client_ip = ""
        self.board.mark(self.slot, IDLE)
        if self.master.front_waiting():  # a client waits in the front: take it now
            self.nudge_master()
        if self.master.args.pretty_child:
            daemon.set_title("qpsmtpd child")       # qpsmtpd's own idle title
        else:
            self.title("idle")

    def nudge_master(self):
        try:
            os.write(self.nudge_fd, b"\0")
        except OSError:                  # full (the master is behind) or gone
            pass

    def follow_accept_mode(self):
        """Wait on the front's listeners too while the children accept (DIRECT)."""
        want = self.master.accept_mode() == DIRECT and not self.stop
        if want == self.direct or not self.front_fds:
            return
        for fd in self.front_fds:
            try:
                if want:
                    self.poller.register(fd, select.EPOLLIN | _EPOLLEXCLUSIVE)
                else:
                    self.poller.unregister(fd)
            except (OSError, ValueError):
                pass                     # closed: we are stopping
        self.direct = want

    def accept_calm(self, listener):
        """A client from the front's listener while the pool is calm. Taken under
        the accept lock, so the reserve and --max-from-ip hold exactly: the child
        that takes the last child outside the reserve hands new clients to the front
        (they wait for it in the listen queue); a client whose IP has --max-from-ip
        children goes to the front to wait."""
        master = self.master
        mode = master.accept_mode
        line = reserve_line(master.max_children)
        with mode.locked():
            if mode() != DIRECT:
                return None, None
            if self.board.totals()[BUSY] >= line:
                self.front_takes_over()
                return None, None
            client, peer = listener.accept()
            if client is None:
                return None, None
            ip = peer_ip(peer)
            limit = master.max_conn_ip
            over = limit and ip not in EXEMPT and self.board.busy_addrs().count(ip) >= limit
            if over:
                self.front_takes_over()
            else:
                self.board.mark(self.slot, BUSY, ip)
                if self.board.totals()[BUSY] >= line:
                    self.front_takes_over()
        if over:
            self.pass_back(client, ip)
            return None, None
        return client, peer

    def front_takes_over(self):
        """Under the accept lock: new clients go to the front from now on."""
        self.master.accept_mode.set(FRONT)
        self.nudge_master()

    def pass_back(self, client, ip):
        """Give a client to the master's front (it wakes on the message)."""
        try:
            socket.send_fds(self.master.passback[1], [ip.encode("ascii", "replace")],
                            [client.fileno()])
        except OSError:
            say(client, busy_reply(self.app.me))
        client.close()

    def accept(self):
        """Wait for a client on any listener; (None, None, None) after a signal, when
        another child won the race, or when the master has gone away."""
        self.follow_accept_mode()
        events = self.poller.poll(1.0)
        if os.getppid() != self.master_pid:
            self.stop = True             # orphaned: serve nobody new
        ready = [fd for fd, _ in events if fd in self.by_fd]
        if any(fd == self.wake[0] for fd, _ in events):
            _drain(self.wake[0])
        if self.stop:
            return None, None, None
        if self.handoff is not None and any(fd == self.handoff.fileno() for fd, _ in events):
            client, handoff = self.take_handoff()
            if client is not None:
                return client, None, handoff
        for fd in ready:
            listener = self.by_fd[fd]
            client, peer = listener.accept()
            if client is not None:
                return client, peer, listener
        for fd, _ in events:
            listener = self.front_fds.get(fd)
            if listener is not None:
                client, peer = self.accept_calm(listener)
                if client is not None:
                    return client, peer, listener
        return None, None, None

    def take_handoff(self):
        """A client passed on by the front: (socket, Handoff) or (None, None)."""
        try:
            message, fds, _, _ = socket.recv_fds(self.handoff, 65536, 1)
        except (BlockingIOError, InterruptedError):
            return None, None
        if not fds:
            return None, None
        # taken: busy (so nothing more is handed here meanwhile), then tell the master
        self.board.mark(self.slot, BUSY)
        try:
            os.write(self.status_fd, ACK.pack(self.slot))
        except OSError:
            pass
        client = socket.socket(fileno=fds[0])
        for extra in fds[1:]:
            os.close(extra)
        head, _, data = message.partition(b"\n")
        try:
            meta = json.loads(head)
        except ValueError:
            client.close()
            return None, None
        client.setblocking(True)
        return client, Handoff(meta.get("greeted", False), meta.get("early"), data)

    def serve(self, client, peer, listener):
        handoff = listener if isinstance(listener, Handoff) else None
        if handoff is not None:
            try:
                peer, local = client.getpeername(), None
            except OSError:              # gone while it was being passed on
                client.close()
                return
        else:
            peer, local = self.master.proxied(client, peer, listener)
        if peer is None:
            client.close()
            return
        ip = peer_ip(peer)
        self.busy = True
        self.client_ip = ip
        self.client = client
        self.board.mark(self.slot, BUSY, ip)
        # accepted here, not handed off: the master learns of it only if it should fork
        if (handoff is None and not self.master.holding()
                and self.board.short_of_spares(self.master.idle_target)):
            self.nudge_master()
        self.title(f"{ip} connect")
        try:
            # child_addrs only matter to pre-connection plugins (hosts_allow), and are
            # read from the scoreboard only when one of them looks
            addrs = self.board.lazy_busy_addrs(exclude=self.slot)
            serve_client(self.app, client, peer, listener.smtps, self.master.max_conn_ip,
                         addrs, self.master.refusals, local=local, handoff=handoff)
        except Exception:
            self.app.log(C.LOGERROR, f"session with {ip} failed:\n{traceback.format_exc().rstrip()}")
        finally:
            self.client = None
            try:
                client.close()
            except OSError:
                pass
            if self.stop:
                for other in self.listeners:
                    other.close()

    def on_command(self, session):
        """Called before each SMTP command: the process title. (The heartbeat comes
        from the channel as bytes flow, see liveness.py.)"""
        self.title(f"{self.client_ip} {session.verb}")


#: Linux 4.5+; 0 elsewhere (every idle child then wakes for each new client)
_EPOLLEXCLUSIVE = getattr(select, "EPOLLEXCLUSIVE", 0)

#: signals a child dies of by its own fault (a crash), not because it was killed
CRASH_SIGNALS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE,
                 signal.SIGABRT, signal.SIGSYS}


def failed_by_itself(status):
    """A non-zero exit or a crash signal; SIGKILL, SIGTERM ... from outside are not."""
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status) != 0
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) in CRASH_SIGNALS


def _drain(fd):
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if os.geteuid() == 0 and not args.user and not args.allow_root:
        early_log(C.LOGERROR, f"{PROG}: --user is required when started as root (or --allow-root)")
        return EX_USAGE
    return PreforkMaster(args).run()


if __name__ == "__main__":
    sys.exit(main())
