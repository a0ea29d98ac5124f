"""`qpsmtpd-forkserver`: the master accepts, and hands each connection to a child.

The child runs the pre-connection hooks with the master's snapshot of the other
connections' IPs (child_addrs, for hosts_allow and --max-from-ip), then the
session. At --limit-connections the master stops accepting until a session ends;
new clients wait in the listen backlog meanwhile.

A fork per connection cost 3.5-7 ms of CPU (issue 15: the fork, then copy-on-write
faults in child and master, then exit). So a child, once forked, may serve more
connections: after a session it tells the master it is free, and the master passes
it the next accepted socket over a unix socket pair (SCM_RIGHTS) with the client's
address and child_addrs. The master forks one spare child ahead of demand when none
is free, retires a child after WORKER_SESSIONS sessions and any child idle for
--max-idle seconds (default 60: a burst finds the children of the last one; a quiet
server is then just the master, as before), and never
reuses a child that was forked before a reload or during a stop: it closes its end
of the pair, and a waiting child that reads end-of-file exits. After USR1 (log files
reopened in the master) the children are retired the same way.

Signals to the master: HUP reloads config and plugins for the connections that
follow (running ones are unaffected); TERM/INT stop accepting and give running
sessions --graceful-timeout seconds; USR1 makes plugins reopen their log files.
A child that makes no progress (no byte to or from its client, no plugin
keepalive) for twice the SMTP timeout has its stack logged and is killed
(liveness.py).
"""

import os
import select
import signal
import socket
import sys
import time
import traceback

from .. import constants as C
from . import daemon
from .connect import peer_ip, serve_client
from .liveness import Heartbeat, Watchdog, heartbeat_interval
from .common import ServerArgumentParser
from .master import (Master, add_common_options, add_max_idle_option, check_max_idle,
                     finish_common_options, ignore_signal)
from .orphan import SessionBound, cut_session, orphaned
from .scoreboard import BUSY, IDLE, Scoreboard

PROG = "qpsmtpd-forkserver"
DEFAULT_USER = "smtpd"        # qpsmtpd's forkserver becomes this user when started as root
WORKER_SESSIONS = 100         # connections one child serves at most, then it exits
SPARES = 1                    # children forked ahead of demand (when none is free)


def parse_args(argv):
    parser = ServerArgumentParser(
        prog=PROG,
        description="Forking qpsmtpd daemon: the master accepts, a child process serves each "
                    "SMTP connection (one at a time, up to 100 each).",
        epilog="Signals: HUP reload, TERM/INT graceful stop, USR1 reopen logs. "
               "-c is --limit-connections here, as in qpsmtpd's forkserver (in `qpsmtpd` "
               "-c is --config): scripts and units had better use the long forms. "
               "The manual (options, signals, systemd units) is docs/servers.md in the "
               "qpsmtpd_py source, installed by scripts/install as "
               "/usr/share/doc/qpsmtpd-py/servers.md; `qpsmtpd-doc NAME` shows a plugin's.")
    add_common_options(parser, default_port=2525, max_from_ip=5)
    add_max_idle_option(parser, "a free child is retired once it has been idle this long")
    parser.add_argument("-c", "--limit-connections", type=int, default=15, metavar="N",
                        help="concurrent connections (children) at most (default 15; "
                             "-c as in qpsmtpd's forkserver, not --config)")
    args = finish_common_options(parser.parse_args(argv))
    if args.limit_connections < 1:
        parser.error("--limit-connections must be at least 1")
    check_max_idle(parser, args)
    return args


class Child:
    """The master's record of one child: its scoreboard slot, its end of the
    socket pair, and its client's IP while it serves one (None while free)."""

    __slots__ = ("ip", "slot", "killed", "sock", "free_since", "served")

    def __init__(self, slot, sock):
        self.ip = None
        self.slot = slot
        self.killed = False
        self.sock = sock              # None once the child may not be given more work
        self.free_since = None        # monotonic time it became free; None while busy/starting
        self.served = 0

    def retire(self):
        """Give this child no more connections: a free one reads end-of-file and exits,
        a busy one exits after its session."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.free_since = None


class ForkServer(Master):
    prog = PROG
    default_port = 2525
    refusals = {550: "Sorry, service not available for you", 451: "Sorry, try again later"}

    def __init__(self, args):
        super().__init__(args)
        self.limit = args.limit_connections
        # busy children, free ones, and retired ones until they are reaped
        self.board = Scoreboard(2 * self.limit + SPARES)
        self.watchdog = Watchdog(self.board)
        self.shown_status = None

    def choose_user(self):
        """As root without --user: become `smtpd` like qpsmtpd does when that user
        exists; otherwise refuse unless --allow-root."""
        if not self.args.user and os.geteuid() == 0 and not self.args.allow_root \
                and daemon.user_exists(DEFAULT_USER):
            return DEFAULT_USER
        return super().choose_user()

    def run(self):
        self.start()
        self.freeze()
        self.notifier.ready(self.status_text())
        self.show_status()
        while not self.stopping:
            timeout = self.wake_within(1.0)
            due = self.notifier.watchdog_timeout()
            if due is not None:
                timeout = min(timeout, due)
            full = self.busy >= self.limit
            workers = [r.sock for r in self.children.values() if r.sock is not None and r.free_since is None]
            ready = self.wait(timeout, workers if full else self.listeners + workers)
            self.reap()                  # first, so child_addrs and the limit are current
            for each in ready:
                if isinstance(each, socket.socket):
                    self.worker_said(each)
            for each in ready:
                if not isinstance(each, socket.socket):
                    self.accept_from(each)
            self.retire_idle()
            self.kill_hung()
            self.show_status()
            self.notifier.ping_watchdog()
        self.finish_stop()
        return 0

    @property
    def busy(self):
        """Connections being served (the --limit-connections count)."""
        return sum(1 for record in self.children.values() if record.ip is not None)

    def accept_from(self, listener):
        while self.busy < self.limit and not self.stopping:
            client, peer = listener.accept()
            if client is None:
                return
            try:
                self.dispatch(client, peer, listener)
            finally:
                client.close()           # before any other fork: only the child holds it
            if not self.free_children() and len(self.children) < self.limit + SPARES:
                self.collect_free()
                if not self.free_children():
                    self.spawn()         # ahead of demand: the next client finds it ready

    def dispatch(self, client, peer, listener):
        """Pass the client to a free child, or to a new one."""
        ip = peer_ip(peer)
        others = [record.ip for record in self.children.values() if record.ip is not None]
        message = " ".join([str(self.listeners.index(listener)), str(peer[0]), str(peer[1]), *others])
        for attempt in range(2):
            for record in self.free_children():
                if self.hand_over(record, client, message, ip):
                    return
            if attempt == 0:
                self.collect_free()
        record = self.spawn(client)
        if record is None or not self.hand_over(record, client, message, ip):
            self.log(C.LOGERROR, f"no child to serve {ip}: connection closed")

    def free_children(self):
        return [r for r in self.children.values() if r.free_since is not None and r.sock is not None]

    def hand_over(self, record, client, message, ip):
        try:
            socket.send_fds(record.sock, [message.encode("ascii")], [client.fileno()])
        except OSError:                  # the child has gone: reaped later
            record.retire()
            return False
        record.ip = ip
        record.free_since = None
        record.served += 1
        if record.served >= WORKER_SESSIONS:
            record.retire()             # it exits after this session
        return True

    def collect_free(self):
        """Read the notices of children that have just finished (one poll, no wait)
        before forking: a burst of short sessions otherwise forks a child for nearly
        every connection whose predecessor's notice is still unread (61 forks for
        smtp-source -s 10 -m 100 with --limit-connections 60)."""
        socks = {r.sock.fileno(): r.sock for r in self.children.values()
                 if r.sock is not None and r.free_since is None}
        if not socks:
            return
        poller = select.poll()
        for fd in socks:
            poller.register(fd, select.POLLIN)
        for fd, _ in poller.poll(0):
            self.worker_said(socks[fd])

    def worker_said(self, sock):
        """A child's end of the pair is readable: it is free again, or it has gone."""
        record = next((r for r in self.children.values() if r.sock is sock), None)
        if record is None:
            return
        try:
            data = sock.recv(16)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        record.ip = None
        if data and not self.stopping:
            record.free_since = time.monotonic()
        else:
            record.retire()

    def retire_idle(self):
        now = time.monotonic()
        for record in self.free_children():
            if now - record.free_since >= self.args.max_idle:
                record.retire()

    def wake_within(self, timeout):
        free = [r.free_since for r in self.free_children()]
        if free:
            timeout = min(timeout, max(0.0, min(free) + self.args.max_idle - time.monotonic()) + 0.01)
        return super().wake_within(timeout)

    def spawn(self, client=None):
        """Fork a child that waits for connections on its end of a socket pair; its
        record (None when it cannot be forked). `client`, the master's copy of an
        accepted socket, is closed in the child: it gets its own over the pair, and
        a copy left open would keep the connection up after the session closes it."""
        slot = self.board.claim()
        if slot is None:
            return None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            pid = self.fork()
        except OSError as exc:
            self.board.release(slot)
            ours.close()
            theirs.close()
            self.log(C.LOGERROR, f"cannot fork: {exc.strerror}")
            return None
        if pid == 0:
            ours.close()
            if client is not None:
                client.close()
            self.worker(theirs, slot)              # never returns
        theirs.close()
        ours.setblocking(False)
        self.board.set_pid(slot, pid)
        record = self.children[pid] = Child(slot, ours)
        record.free_since = time.monotonic()      # it takes a connection as soon as it runs
        return record

    def begin_stop(self, why):
        super().begin_stop(why)
        self.retire_all()               # free children leave now, busy ones after their session

    def after_reload(self):
        self.retire_all()               # the next connections get children of the new config

    def reopen_logs(self):
        super().reopen_logs()
        self.retire_all()               # a child forked before holds the old log files

    def retire_all(self):
        for record in self.children.values():
            record.retire()

    def install_child_signals(self):
        # a running session always finishes: TERM, INT and HUP wait for it; but TERM
        # also comes when the master dies, and then the session gets a bound (orphan.py)
        for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
            signal.signal(signum, ignore_signal)
        self.client = None
        self.bound = SessionBound(self.args.graceful_timeout, self.master_gone)
        signal.signal(signal.SIGTERM, self.child_on_term)

    def child_on_term(self, signum, frame):
        if orphaned(self.master_pid):
            self.bound.arm()

    def master_gone(self):
        """In a child: the grace period after the master's death is over."""
        cut_session(self.client, self.app.me, lambda msg: self.app.log(C.LOGWARN, msg))
        self.child_exit(1)

    def worker(self, sock, slot):
        """A child: serve the connections the master passes until it closes our
        pair, or WORKER_SESSIONS; never returns."""
        code = 0
        try:
            for record in self.children.values():   # the other children's pairs
                if record.sock is not None:
                    record.sock.close()
            self.children = {}
            for each in self.listeners:
                each.close()
            self.ip = None
            self.app.on_command = lambda session: daemon.set_title(f"{PROG} child: {self.ip} {session.verb}")
            self.app.heartbeat = Heartbeat(lambda: self.board.heartbeat(slot),
                                           heartbeat_interval(self.app.timeout))
            # stress (limits.py): every connection in use, new clients wait in the backlog
            self.app.stress = lambda: self.board.states().count(BUSY) >= self.limit
            self.app.hooks.run("post-fork", None)
            for served in range(1, WORKER_SESSIONS + 1):
                self.board.mark(slot, IDLE)
                daemon.set_title(f"{PROG} child: idle")
                try:
                    message, fds, _, _ = socket.recv_fds(sock, 4096, 1)
                except OSError:
                    break
                if not fds:
                    break                  # the master closed our pair (retired us): leave
                client = socket.socket(fileno=fds[0])
                try:
                    self.serve(client, message.decode("ascii").split(), slot)
                finally:
                    client.close()
                    self.client = None
                if served < WORKER_SESSIONS:
                    try:
                        sock.send(b"free")
                    except OSError:        # the master retired us, stopped or has gone
                        break
        except BaseException:              # never let a child return into the master's code
            code = 1
            self.app.log(C.LOGERROR, f"session with {self.ip} failed:\n{traceback.format_exc().rstrip()}")
        finally:
            self.child_exit(code)

    def serve(self, client, words, slot):
        """One connection in a child: PROXY header, pre-connection hooks, session."""
        listener = self.listeners[int(words[0])]
        peer, others = (words[1], int(words[2])), words[3:]
        self.client = client
        self.ip = ip = peer_ip(peer)
        self.board.mark(slot, BUSY, ip)
        daemon.set_title(f"{PROG} child: {ip} connect")
        peer, local = self.proxied(client, peer, listener)
        if peer is None:
            return
        if local is not None:            # behind a proxy: the real client from here on
            self.ip = ip = peer_ip(peer)
            self.board.mark(slot, BUSY, ip)
            others = self.board.busy_addrs(exclude=slot)
            daemon.set_title(f"{PROG} child: {ip} connect")
        serve_client(self.app, client, peer, listener.smtps, self.max_conn_ip, others,
                     self.refusals, local=local)

    def child_gone(self, pid, record, status):
        record.retire()
        self.board.release(record.slot)

    def status_text(self):
        return f"{self.busy} of {self.limit} connections"

    def show_status(self):
        text = self.status_text()
        if text != self.shown_status:
            self.shown_status = text
            daemon.set_title(f"{PROG} master: {text}")
            self.notifier.status(text)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return ForkServer(args).run()


if __name__ == "__main__":
    sys.exit(main())
