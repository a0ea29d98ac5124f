"""What the masters of qpsmtpd-prefork and qpsmtpd-forkserver share: the
options, the start-up order, signals turned into main-loop events, reaping,
reload, and the graceful stop.

Start-up order: claim the pid file, bind (or adopt systemd's sockets), renice,
drop privileges, load config and plugins (errors reach the terminal and stop
start-up), detach, write the pid, tell systemd READY=1.

Signals only write their number to a pipe (signal.set_wakeup_fd); the main loop
reads it and acts, so no work ever happens inside a signal handler. They are
blocked around fork() so a child can never act on, or report, the master's.
"""

import argparse
import gc
import os
import select
import signal
import sys
import time

from .. import __version__
from .. import constants as C
from ..app import early_log
from ..config import ConfigError
from ..metrics import MetricsError, MetricsService
from . import daemon
from .common import import_plugin_modules, load_app, preload_dns
from .daemon import DaemonError, PidFile
from .listen import SMTPS_PORT, ListenError, bind_all, inherited_listeners, listen_specs, parse_port
from .proxy import ProxyError, ProxyProtocol
from .notify import Notifier
from .liveness import DUMP_SIGNAL, limit_for
from .orphan import ask_for_death_signal
from .scoreboard import BUSY
from .warmup import warm_up

MASTER_SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT,
                  signal.SIGUSR1, signal.SIGCHLD)
EX_USAGE, EX_CONFIG = 64, 78


# -- options -----------------------------------------------------------------------------
def port_arg(value):
    try:
        return parse_port(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc))


def add_common_options(parser, default_port, max_from_ip):
    """Options both servers take, with qpsmtpd's names."""
    parser.add_argument("-l", "--listen-address", "--interface", dest="listen", action="append",
                        default=[], metavar="ADDR[:PORT]",
                        help="address to listen on, repeatable; IPv6 in brackets ([::1]:25); "
                             "default [::] (all IPv4 and IPv6 addresses) or 0.0.0.0")
    parser.add_argument("-p", "--port", dest="ports", action="append", type=port_arg, default=[],
                        metavar="PORT", help=f"port for addresses given without one, repeatable "
                                             f"(default {default_port})")
    parser.add_argument("--proxy-protocol", dest="proxy_ports", action="append", type=port_arg,
                        default=[], metavar="PORT",
                        help="listeners on PORT take a PROXY protocol header (v1 or v2, as "
                             "HAProxy sends) before the greeting: the client's real address, "
                             "repeatable")
    parser.add_argument("--proxy-from", dest="proxy_from", action="append", default=None,
                        metavar="IP[/BITS][,...]",
                        help="proxies allowed to send PROXY headers, repeatable "
                             "(default 127.0.0.1 and ::1); anyone else is disconnected")
    parser.add_argument("--smtps-port", dest="smtps_ports", action="append", type=port_arg,
                        default=[], metavar="PORT",
                        help="also listen on PORT with implicit TLS (like 465), repeatable; "
                             f"port {SMTPS_PORT} is always implicit TLS")
    parser.add_argument("-m", "--max-from-ip", type=int, default=None, metavar="N",
                        help=f"concurrent connections allowed from one IP (default {max_from_ip}); "
                             "enforced by the hosts_allow plugin")
    parser.add_argument("-u", "--user", metavar="USER",
                        help="user (and its groups) to run as after binding the ports")
    parser.add_argument("--allow-root", action="store_true",
                        help="started as root, keep running as root (not recommended)")
    parser.add_argument("--pid-file", metavar="PATH", help="write the master's pid to PATH")
    parser.add_argument("-d", "--detach", action="store_true",
                        help="run in the background (stdio on /dev/null, new session)")
    parser.add_argument("-H", "--no-rdns", action="store_true",
                        help="do not look up the client's host name (PTR)")
    parser.add_argument("--config", metavar="DIR", help="config directory (sets QPSMTPD_CONFIG)")
    parser.add_argument("--graceful-timeout", type=float, default=30.0, metavar="SECONDS",
                        help="on TERM/INT, how long running sessions may take to finish "
                             "before they are killed (default 30)")
    parser.add_argument("--metrics-listen", metavar="ADDR:PORT",
                        help="serve Prometheus metrics (GET /metrics) of every child on ADDR:PORT")
    parser.add_argument("--debug", action="store_true", help="log everything (LOGDEBUG)")
    parser.add_argument("--quiet", action="store_true",
                        help="log only errors from the master itself")
    parser.add_argument("--version", action="version", version=f"%(prog)s (qpsmtpd_py) {__version__}")
    parser.set_defaults(default_max_from_ip=max_from_ip)


MAX_IDLE = 60             # default --max-idle (Postfix's max_idle is 100)
HUNG_SCAN_EVERY = 0.25    # seconds between the master's scans for hung children


def add_max_idle_option(parser, rule):
    """--max-idle: how long children a burst left idle are kept for the next one
    (`rule`: which children are retired when, for the help)."""
    parser.add_argument("--max-idle", type=float, default=MAX_IDLE, metavar="SECONDS",
                        help=f"{rule}, so the next burst finds warm children "
                             f"(default {MAX_IDLE}; Postfix: max_idle)")


def check_max_idle(parser, args):
    if args.max_idle < 0:
        parser.error("--max-idle must not be negative")


def finish_common_options(args):
    """Defaults that depend on whether an option was given."""
    args.max_from_ip_given = args.max_from_ip is not None
    if args.max_from_ip is None:
        args.max_from_ip = args.default_max_from_ip
    return args


class Master:
    """The shared half of a forking server's master process."""

    prog = "qpsmtpd"
    default_port = 25
    refusals = {550: "Sorry, service not available to you", 451: "Sorry, try again later"}

    def __init__(self, args):
        self.args = args
        self.app = None
        self.listeners = []
        self.pidfile = None
        self.notifier = Notifier({})
        self.children = {}                # pid -> record with .slot and .killed
        self.board = None                 # Scoreboard: children's state and heartbeat
        self.watchdog = None              # liveness.Watchdog over the board
        self.next_hung_scan = 0.0
        self.stopping = False
        self.stop_deadline = None
        self.signal_pipe = None
        self.proxy = None                 # ProxyProtocol when --proxy-protocol is given
        self.max_conn_ip = args.max_from_ip
        self.master_pid = os.getpid()     # in a child: the master that forked it
        self.metrics = None               # MetricsService with --metrics-listen

    # -- logging -----------------------------------------------------------------------------
    def log(self, level, msg):
        if self.args.quiet and level > C.LOGERROR:
            return
        if self.app is not None:
            self.app.log(level, msg)
        else:
            early_log(level, f"{self.prog}: {msg}")

    def die(self, msg, code=1):
        if self.pidfile:
            self.pidfile.remove()
        early_log(C.LOGERROR, f"{self.prog}: {msg}")
        sys.exit(code)

    # -- start-up ------------------------------------------------------------------------------
    def start(self):
        """Everything before serving; any problem ends the program with a message."""
        args = self.args
        if args.config:
            os.environ["QPSMTPD_CONFIG"] = os.path.abspath(args.config)
        elif os.environ.get("QPSMTPD_CONFIG"):
            os.environ["QPSMTPD_CONFIG"] = os.path.abspath(os.environ["QPSMTPD_CONFIG"])
        user = self.choose_user()
        try:
            if args.pid_file:
                self.pidfile = PidFile(args.pid_file)
                self.pidfile.claim()
            self.listeners = self.open_listeners()
            self.proxy = self.proxy_listeners()
            if args.metrics_listen:
                self.metrics = MetricsService(args.metrics_listen)
            self.before_privilege_drop()
            if user:
                import_plugin_modules(rdns=not args.no_rdns)
                daemon.drop_privileges(user)
        except (DaemonError, ListenError, MetricsError) as exc:
            self.die(str(exc))
        try:
            self.app = self.prepare(load_app())
        except ConfigError as exc:
            self.die(f"configuration error: {exc}", EX_CONFIG)
        self.check_plugins()
        if args.detach:
            daemon.detach()
        if self.pidfile:
            self.pidfile.write()
        self.notifier = Notifier()
        self.install_signals()
        if self.metrics is not None:
            store = getattr(self.app, "_store", None)      # LMDB store the plugins opened
            self.metrics.start(self.board, self.prog, os.getpid(), self.listeners,
                               getattr(store, "path", None))
        self.log(C.LOGNOTICE, f"{self.prog} {__version__} listening on "
                 + ", ".join(f"{l.name}{' (smtps)' if l.smtps else ''}" for l in self.listeners)
                 + f" as {daemon.describe_user()}")

    def choose_user(self):
        """The --user to become. Root without --user is refused unless --allow-root
        (the forkserver first tries qpsmtpd's default user, see its override)."""
        if self.args.user:
            return self.args.user
        if os.geteuid() == 0 and not self.args.allow_root:
            self.die("refusing to run as root: give --user NAME (or --allow-root)", EX_USAGE)
        return None

    def open_listeners(self):
        smtps = set(self.args.smtps_ports) | {SMTPS_PORT}
        inherited = inherited_listeners(smtps)
        if inherited:
            return inherited
        ports = self.args.ports or [self.default_port]
        try:
            specs = listen_specs(self.args.listen, ports, self.args.smtps_ports)
        except ValueError as exc:
            self.die(str(exc), EX_USAGE)
        return bind_all(specs, smtps)

    def proxy_listeners(self):
        """Mark the listeners that expect a PROXY header; every --proxy-protocol port
        must be one of ours."""
        if not self.args.proxy_ports:
            return None
        try:
            proxy = ProxyProtocol(self.args.proxy_ports, self.args.proxy_from)
        except ValueError as exc:
            self.die(str(exc), EX_USAGE)
        for port in proxy.ports - {listener.port for listener in self.listeners}:
            self.die(f"--proxy-protocol {port}: no listener on port {port}", EX_USAGE)
        for listener in self.listeners:
            listener.proxy = proxy.wanted(listener)
        return proxy

    def proxied(self, client, peer, listener):
        """(peer, local) of the real client: from the PROXY header on a proxy listener
        (None when the connection must be dropped), else the socket's own."""
        if not getattr(listener, "proxy", False):
            return peer, None
        try:
            return self.proxy.accept(client, peer)
        except ProxyError as exc:
            self.app.log(C.LOGWARN, f"proxy: dropped a connection on {listener.name}: {exc}")
            return None, None

    def before_privilege_drop(self):
        """Hook for work that needs root (prefork renices itself here)."""

    def prepare(self, app):
        """Server settings that outlive a reload are applied to every new app."""
        app.rdns = not self.args.no_rdns
        if app.rdns:
            preload_dns()
        if self.args.debug:
            app.loglevel = C.LOGDEBUG
        return app

    def check_plugins(self):
        if self.args.max_from_ip_given and self.max_conn_ip and not self.app.hooks.has("pre-connection"):
            self.log(C.LOGNOTICE, f"--max-from-ip {self.args.max_from_ip} has no effect: no "
                     "pre-connection plugin (hosts_allow) is loaded")

    # -- signals ---------------------------------------------------------------------------------
    def install_signals(self):
        read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.signal_pipe = (read_end, write_end)
        signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        for signum in MASTER_SIGNALS:
            signal.signal(signum, ignore_signal)

    def read_signals(self):
        """Signal numbers that arrived since the last call, in order."""
        try:
            data = os.read(self.signal_pipe[0], 512)
        except BlockingIOError:
            return []
        return list(data)

    def wait(self, timeout, fds=()):
        """Sleep until a signal, one of `fds` is readable, or the timeout; handle the
        signals; return the readable fds."""
        poller = select.poll()
        poller.register(self.signal_pipe[0], select.POLLIN)
        by_fd = {}
        for each in fds:
            fd = each if isinstance(each, int) else each.fileno()
            by_fd[fd] = each
            poller.register(fd, select.POLLIN)
        events = poller.poll(max(0.0, timeout) * 1000)
        for signum in self.read_signals():
            self.on_signal(signum)
        return [by_fd[fd] for fd, _ in events if fd in by_fd]

    def on_signal(self, signum):
        if signum == signal.SIGHUP:
            if not self.stopping:
                self.reload()
        elif signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            if self.stopping:
                self.log(C.LOGWARN, f"{signal.Signals(signum).name} again: stopping now")
                self.stop_deadline = time.monotonic()
            else:
                self.begin_stop(signal.Signals(signum).name)
        elif signum == signal.SIGUSR1:
            self.reopen_logs()
            self.signal_children(signal.SIGUSR1)

    # -- forking ---------------------------------------------------------------------------------
    def fork(self):
        """fork() with the master's signals blocked, so that none is lost or seen by
        the child before it has its own handlers. Returns the pid (0 in the child)."""
        sys.stdout.flush()
        sys.stderr.flush()
        dump_fd = self.watchdog.before_fork() if self.watchdog else None
        old = signal.pthread_sigmask(signal.SIG_BLOCK, MASTER_SIGNALS)
        self.master_pid = os.getpid()
        try:
            pid = os.fork()
        except OSError:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
            if dump_fd is not None:
                self.watchdog.fork_failed(dump_fd)
            raise
        if pid == 0:
            self.become_child(dump_fd)
        elif dump_fd is not None:
            self.watchdog.forked(pid, dump_fd)
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        return pid

    def become_child(self, dump_fd=None):
        """In a fresh child (signals still blocked): drop what is the master's."""
        if dump_fd is not None:
            self.watchdog.arm_child(dump_fd)
        signal.set_wakeup_fd(-1)
        for signum in MASTER_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        for fd in self.signal_pipe:
            os.close(fd)
        self.signal_pipe = None
        self.notifier.close()
        if self.pidfile:
            self.pidfile.close_in_child()
        self.install_child_signals()
        # SIGTERM when the master dies (orphan.py); pending until signals are unblocked
        ask_for_death_signal(self.master_pid)

    def install_child_signals(self):
        """Subclasses set the child's handlers here, before its signals are unblocked.
        SIGTERM also comes when the master dies: orphan.orphaned(self.master_pid)."""

    def child_exit(self, code=0):
        """Leave a child without running the master's exit handlers."""
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)

    def freeze(self):
        """Warm the engine's code up (server/warmup.py: a child starts with specialised
        bytecode instead of paying for it in its first session), then move everything
        loaded so far out of the collector's sight, so children share those pages
        copy-on-write instead of touching them at each GC."""
        warm_up()
        if self.watchdog is not None:
            self.watchdog.arm_master()
        gc.unfreeze()
        gc.collect()
        gc.freeze()

    # -- children ----------------------------------------------------------------------------------
    def reap(self):
        """Collect every exited child; returns [(pid, record, status)]. Only our own
        workers are waited for: a plugin's helper process (a log pipe, say) belongs to
        the plugin's subprocess.Popen."""
        gone = []
        for pid in list(self.children):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done == pid:
                record = self.children.pop(pid)
                gone.append((pid, record, status))
                self.child_gone(pid, record, status)
                if os.WIFSIGNALED(status) and not self.stopping:
                    self.log(C.LOGWARN, f"child {pid} killed by signal "
                             f"{signal.Signals(os.WTERMSIG(status)).name}")
                elif os.WIFEXITED(status) and os.WEXITSTATUS(status) != 0:
                    self.log(C.LOGWARN, f"child {pid} exited with status {os.WEXITSTATUS(status)}")
                dump = self.watchdog.take_dump(pid) if self.watchdog else ""
                if dump:                 # a fatal signal, or it left during its grace period
                    self.log(C.LOGWARN, f"child {pid} left a stack dump:\n{dump}")
        return gone

    def child_gone(self, pid, record, status):
        """Subclasses free what the child held (its scoreboard slot, its IP)."""

    def kill_hung(self):
        """End children that made no progress (no byte to or from the client, no
        keepalive) for 2 x timeout, starting ones included: first a stack dump into
        the log, then SIGKILL (liveness.py)."""
        if self.watchdog is None:
            return
        # the limit is 2 x timeout (seconds to minutes): scanning every slot after each
        # connection, as the main loop wakes, would cost more than it finds
        now = time.monotonic()
        stuck = []
        timeout = self.app.timeout
        if now >= self.next_hung_scan:
            self.next_hung_scan = now + HUNG_SCAN_EVERY
            stuck = self.watchdog.stuck(self.children, limit_for(timeout))
        for pid, record, state, ip, silent in stuck:
            doing = f"serving {ip}" if state == BUSY else "starting"
            self.log(C.LOGWARN, f"child {pid} {doing} hung: no progress for {silent:.1f}s "
                     f"(over 2 x timeout {timeout}s); dumping its stack, then killing it")
            record.killed = True
            self.watchdog.dumping(pid)
            self.signal_children(DUMP_SIGNAL, [pid])
        for pid in self.watchdog.due():
            dump = self.watchdog.take_dump(pid)
            self.log(C.LOGWARN, f"child {pid} stack when killed:\n{dump}" if dump
                     else f"child {pid} wrote no stack dump; killing it")
            self.signal_children(signal.SIGKILL, [pid])

    def wake_within(self, timeout):
        """`timeout` for the main loop's wait, shortened so a grace period that ends
        sooner is acted on in time."""
        due = self.watchdog.next_due() if self.watchdog else None
        return timeout if due is None else min(timeout, due)

    def signal_children(self, signum, pids=None):
        for pid in list(self.children if pids is None else pids):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    # -- reload, log reopening -----------------------------------------------------------------------
    def reload(self):
        """SIGHUP: load config and plugins afresh; on an error keep the running ones."""
        self.notifier.reloading()
        self.log(C.LOGNOTICE, "SIGHUP: reloading configuration and plugins")
        try:
            app = self.prepare(load_app())
        except ConfigError as exc:
            self.log(C.LOGERROR, f"reload failed, still running the previous configuration: {exc}")
        else:
            self.app = app
            self.check_plugins()
            self.after_reload()
            self.log(C.LOGNOTICE, "reload done")
        self.notifier.ready(self.status_text())

    def after_reload(self):
        """Subclasses retire children that run the old configuration."""

    def reopen_logs(self):
        """SIGUSR1: logging plugins that keep files open reopen them (logrotate)."""
        reopen_logs(self.app)

    # -- stopping -----------------------------------------------------------------------------------
    def begin_stop(self, why):
        """Stop accepting; running sessions get --graceful-timeout to finish."""
        self.stopping = True
        self.stop_deadline = time.monotonic() + self.args.graceful_timeout
        self.log(C.LOGNOTICE, f"{why}: stopping; {len(self.children)} children finish their sessions")
        self.notifier.stopping()
        for listener in self.listeners:
            listener.close()
        self.signal_children(signal.SIGTERM)

    def finish_stop(self):
        """Wait for the children until the deadline, then kill the rest."""
        while self.children and time.monotonic() < self.stop_deadline:
            self.wait(min(0.5, self.stop_deadline - time.monotonic()))
            self.reap()
            self.notifier.ping_watchdog()
        if self.children:
            self.log(C.LOGWARN, f"graceful stop timed out: killing {len(self.children)} children")
            self.signal_children(signal.SIGKILL)
            for pid in list(self.children):
                try:
                    os.waitpid(pid, 0)
                except ChildProcessError:
                    pass
                self.child_gone(pid, self.children.pop(pid), 0)
        if self.metrics is not None:
            self.metrics.stop()
        if self.pidfile:
            self.pidfile.remove()
        self.log(C.LOGNOTICE, "stopped")

    def status_text(self):
        return f"{len(self.children)} children"


def reopen_logs(app):
    """Call reopen_logs() on every plugin that has one."""
    if app is None:
        return
    for plugin in app.plugins:
        method = getattr(plugin, "reopen_logs", None)
        if callable(method):
            try:
                method()
            except Exception as exc:   # a log file we cannot reopen must not stop the server
                app.log(C.LOGERROR, f"{plugin.plugin_name}: reopening logs failed: {exc}")


def ignore_signal(signum, frame):
    """A handler that does nothing: for the master the wake-up byte is the event;
    in a forkserver child the session simply goes on (and exec resets it)."""
