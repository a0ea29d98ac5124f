"""The loaded server: config, plugins and hook table, built once (in the master
before any fork) and shared by every session of the process."""

import io
import os
import sys
import tempfile

from . import __version__
from . import constants as C
from .clock import SYSTEM_CLOCK
from .config import Config, ConfigError, beside
from .hooks import HookRunner
from .plugin import PluginLoader, default_plugin_dirs, load_plugins
from .transaction import remove_stale

# No config/loglevel: LOGNOTICE, so the listening line, every refusal and the
# per-transaction and per-connection summaries (summary.py) are shown; plugins'
# LOGINFO detail is not. (qpsmtpd's default, LOGWARN, showed nothing of a normal day.)
DEFAULT_LOGLEVEL = C.LOGNOTICE


def journal_stream(stream):
    """True when `stream` is systemd-journald's stdout/stderr connection: the
    JOURNAL_STREAM device:inode pair names it (systemd.exec(5))."""
    try:
        dev, ino = (int(x) for x in os.environ.get("JOURNAL_STREAM", "").split(":"))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError, io.UnsupportedOperation):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def journal_lines(level, text):
    """Every line with journald's '<N>' priority prefix (sd-daemon(3)); our levels
    are syslog's numbers. Continuation lines (tracebacks) keep the line's priority."""
    return "".join(f"<{level}>{line}\n" for line in text.rstrip("\n").split("\n"))


def early_log(level, text, stream=None):
    """A line written before there is a loaded app to log it (a bad config, a port in
    use, bad options): on stderr, with the journal's '<N>' prefix like every later line."""
    stream = stream or sys.stderr
    stream.write(journal_lines(level, text) if journal_stream(stream) else text.rstrip("\n") + "\n")
    stream.flush()


class Qpsmtpd:
    """Everything a session needs that does not change per connection."""

    version = __version__

    def __init__(self, config=None, plugin_lines=None, stderr=None):
        self.config = config or Config()
        self.config.log = lambda level, msg: self.log(level, msg)
        self.stderr = stderr or sys.stderr
        self.hooks = HookRunner(self.log)
        self.plugins = []
        self.session = None              # the session in progress in this process
        self.tls = None                  # qpsmtpd_py.tls.TLSService, set by the tls plugin
        self._plugin_lines = plugin_lines
        self._in_logging = False
        self.loglevel = DEFAULT_LOGLEVEL
        self.journal = None              # stderr is the journal (JOURNAL_STREAM); found on first line
        self.rdns = True                 # look up the client's PTR name (-H turns it off)
        self.on_command = None           # server mode's callback(session) before each command
        self.clock = SYSTEM_CLOCK        # time()/monotonic()/sleep(); tests put a fake one here
        self.heartbeat = None            # server mode's liveness.Heartbeat (see keepalive)

    # -- loading ---------------------------------------------------------------------------
    def load(self):
        """Read core settings and load every plugin; raises ConfigError naming file:line."""
        self.loglevel = self._read_loglevel()
        dirs = [d for d in self.config.get_list("plugin_dirs")] or default_plugin_dirs()
        self.loader = PluginLoader(dirs)
        self.tls = None                  # the tls plugin sets it again (re-reads certificates)
        lines = self.config.get_list("logging") + (
            self._plugin_lines if self._plugin_lines is not None else self.config.get_list("plugins"))
        if not lines:
            where = self.config.path("plugins") or " or ".join(os.path.join(d, "plugins") for d in self.config.dirs)
            raise ConfigError(f"{where}: no plugins configured")
        self.plugins = load_plugins(self, lines, self.loader)
        if self.hooks.has("config"):
            self.config.hook = self._config_hook
        self._read_core()
        return self

    def _read_loglevel(self):
        value = self.config.get("loglevel", use_hooks=False)
        if value is None:
            return DEFAULT_LOGLEVEL
        level = C.log_level(value)
        if level is None:
            raise ConfigError(f"{value.origin}: loglevel '{value}' is not a log level (0-7 or LOGINFO ...)")
        return level

    def _read_core(self):
        """Settings every session uses, checked now so errors stop start-up."""
        self.me = self.config.get("me")
        self.timeout = self.config.get_int("timeoutsmtpd", 0) or self.config.get_int("timeout", 1200)
        self.databytes = self.config.get_int("databytes", 0)
        self.size_threshold = self.config.get_int("size_threshold", 10000)
        spool_dir = self.config.get("spool_dir")
        self.spool_dir = (beside(spool_dir, spool_dir.path) if spool_dir
                          else os.path.join(tempfile.gettempdir(), "qpsmtpd-spool"))
        if getattr(self, "check_only", False):     # qpsmtpd-check-config: no side effects
            stale = 0
        else:
            try:
                os.makedirs(self.spool_dir, mode=0o700, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"spool_dir {self.spool_dir}: {exc}")
            stale = remove_stale(self.spool_dir)
        if stale:
            self.log(C.LOGINFO, f"spool_dir {self.spool_dir}: removed {stale} stale "
                     "file(s) over 36 hours old")
        self.bare_newlines = (self.config.get("bare_newlines") or "reject").strip().lower()
        if self.bare_newlines not in ("reject", "normalize", "normalise"):
            raise ConfigError(f"bare_newlines: '{self.bare_newlines}' must be reject or normalize")
        self.data_line_limit = self.config.get_int("data_line_limit", 0)
        self.max_recipients = self.config.get_int("max_recipients", 1000)   # Postfix's default
        # a plugin call without keepalive() this long (a network call that drips) is
        # interrupted: 451. Below the liveness limit (2 x timeout), which kills.
        self.hooks.call_limit.seconds = self.config.get_int("plugin_timeout", 0) or self.timeout

    def keepalive(self):
        """This process is making progress: called by the channel at every read and
        write and by plugins during long work, so the server's watchdog does not take
        it for hung. Cheap; the heartbeat itself is rate-limited. It also renews the
        plugin_timeout of the plugin call in progress (hooks.py)."""
        self.hooks.call_limit.renew()
        if self.heartbeat is not None:
            self.heartbeat()

    def reload(self):
        """SIGHUP: forget cached config and hooks, then load everything again."""
        self.config.clear()
        self.hooks = HookRunner(self.log)
        self.config.hook = None
        return self.load()

    def _config_hook(self, name):
        if name in ("me", "logging", "loglevel", "plugin_dirs", "plugins"):
            return None
        txn = self.session.transaction if self.session else None
        code, values, _ = self.hooks.run("config", txn, name)
        return values if code == C.OK else None

    # -- logging -----------------------------------------------------------------------------
    def logs(self, level):
        """Whether log(level, ...) would go anywhere: lets a caller skip building a
        line nobody reads (a logging plugin sees every level; stderr up to loglevel)."""
        return level <= self.loglevel or bool(self.hooks.registry["logging"])

    def log(self, level, msg, hook=None, plugin=None):
        """Send a log line to the logging plugins, or to stderr at or below loglevel."""
        if level > 7:
            return
        if self.hooks.registry["logging"] and not self._in_logging:
            self._in_logging = True
            try:
                txn = self.session.transaction if self.session else None
                self.hooks.run("logging", txn, level, hook, plugin, msg)
            finally:
                self._in_logging = False
            return
        if level <= self.loglevel:
            if self.journal is None:
                self.journal = journal_stream(self.stderr)
            text = self.format_log(level, msg, hook, plugin)
            self.stderr.write(journal_lines(level, text) if self.journal else text)
            self.stderr.flush()

    def format_log(self, level, msg, hook=None, plugin=None):
        prefix = f"{os.getpid()}"
        session = self.session
        if session is not None and session.connection.id:   # every line of a session
            prefix += f" [{session.connection.id}]"
        if hook:
            prefix += f" ({hook})"
        if plugin:
            prefix += f" {plugin}:"
        return f"{prefix} {msg}\n"

    def now(self):
        return self.clock.time()
