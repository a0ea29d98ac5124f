"""`qpsmtpd-forkserver`: the master accepts, and forks one child per connection.

The child runs the pre-connection hooks with the master's snapshot of the other
connections' IPs (child_addrs, for hosts_allow and --max-from-ip), then the
session, then exits. At --limit-connections the master stops accepting until a
child exits; new clients wait in the listen backlog meanwhile.

Signals to the master: HUP reloads config and plugins for the connections that
follow (running ones are unaffected); TERM/INT stop accepting and give running
sessions --graceful-timeout seconds; USR1 makes plugins reopen their log files.
A child that makes no progress (no byte to or from its client, no plugin
keepalive) for twice the SMTP timeout has its stack logged and is killed
(liveness.py).
"""

import argparse
import os
import signal
import sys
import traceback

from .. import constants as C
from . import daemon
from .connect import peer_ip, serve_client
from .liveness import Heartbeat, Watchdog, heartbeat_interval
from .master import Master, add_common_options, finish_common_options, ignore_signal
from .orphan import SessionBound, cut_session, orphaned
from .scoreboard import BUSY, Scoreboard

PROG = "qpsmtpd-forkserver"
DEFAULT_USER = "smtpd"        # qpsmtpd's forkserver becomes this user when started as root


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Forking qpsmtpd daemon: one child process per SMTP connection.",
        epilog="Signals: HUP reload, TERM/INT graceful stop, USR1 reopen logs. "
               "-c is --limit-connections here, as in qpsmtpd's forkserver (in `qpsmtpd` "
               "-c is --config): scripts and units had better use the long forms. "
               "The manual (options, signals, systemd units) is docs/servers.md in the "
               "qpsmtpd_py source, installed by scripts/install as "
               "/usr/share/doc/qpsmtpd-py/servers.md; `qpsmtpd-doc NAME` shows a plugin's.")
    add_common_options(parser, default_port=2525, max_from_ip=5)
    parser.add_argument("-c", "--limit-connections", type=int, default=15, metavar="N",
                        help="concurrent connections (children) at most (default 15; "
                             "-c as in qpsmtpd's forkserver, not --config)")
    args = finish_common_options(parser.parse_args(argv))
    if args.limit_connections < 1:
        parser.error("--limit-connections must be at least 1")
    return args


class Connection:
    """The master's record of one child: its client and scoreboard slot."""

    __slots__ = ("ip", "slot", "killed")

    def __init__(self, ip, slot):
        self.ip = ip
        self.slot = slot
        self.killed = False


class ForkServer(Master):
    prog = PROG
    default_port = 2525
    refusals = {550: "Sorry, service not available for you", 451: "Sorry, try again later"}

    def __init__(self, args):
        super().__init__(args)
        self.limit = args.limit_connections
        self.board = Scoreboard(self.limit)
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
            full = len(self.children) >= self.limit
            ready = self.wait(timeout, [] if full else self.listeners)
            self.reap()                  # first, so child_addrs and the limit are current
            for listener in ready:
                self.accept_from(listener)
            self.kill_hung()
            self.show_status()
            self.notifier.ping_watchdog()
        self.finish_stop()
        return 0

    def accept_from(self, listener):
        while len(self.children) < self.limit and not self.stopping:
            client, peer = listener.accept()
            if client is None:
                return
            try:
                self.spawn(client, peer, listener)
            finally:
                client.close()

    def spawn(self, client, peer, listener):
        ip = peer_ip(peer)
        others = [record.ip for record in self.children.values()]
        slot = self.board.claim()
        try:
            pid = self.fork()
        except OSError as exc:
            self.board.release(slot)
            self.log(C.LOGERROR, f"cannot fork for {ip}: {exc.strerror}")
            return
        if pid == 0:
            self.child(client, peer, listener, ip, others, slot)     # never returns
        self.board.set_pid(slot, pid)
        self.children[pid] = Connection(ip, slot)

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

    def child(self, client, peer, listener, ip, others, slot):
        code = 0
        self.client = client
        try:
            for each in self.listeners:
                each.close()
            self.board.mark(slot, BUSY, ip)

            def on_command(session):
                daemon.set_title(f"{PROG} child: {ip} {session.verb}")

            self.app.on_command = on_command
            self.app.heartbeat = Heartbeat(lambda: self.board.heartbeat(slot),
                                           heartbeat_interval(self.app.timeout))
            # stress (limits.py): every connection in use, new clients wait in the backlog
            self.app.stress = lambda: self.board.states().count(BUSY) >= self.limit
            daemon.set_title(f"{PROG} child: {ip} connect")
            self.app.hooks.run("post-fork", None)
            peer, local = self.proxied(client, peer, listener)
            if peer is None:
                return
            if local is not None:            # behind a proxy: the real client from here on
                ip = peer_ip(peer)
                self.board.mark(slot, BUSY, ip)
                others = self.board.busy_addrs(exclude=slot)
                daemon.set_title(f"{PROG} child: {ip} connect")
            serve_client(self.app, client, peer, listener.smtps, self.max_conn_ip, others,
                         self.refusals, local=local)
        except BaseException:            # never let a child return into the master's code
            code = 1
            self.app.log(C.LOGERROR, f"session with {ip} failed:\n{traceback.format_exc().rstrip()}")
        finally:
            self.child_exit(code)

    def child_gone(self, pid, record, status):
        self.board.release(record.slot)

    def status_text(self):
        return f"{len(self.children)} of {self.limit} connections"

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
