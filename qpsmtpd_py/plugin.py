"""The Plugin base class and the loader for `config/plugins`.

A plugin file (plugins/<name>.py, or plugins/<name> as qpsmtpd names it) defines
one subclass of Plugin. Methods named hook_<hook> are registered automatically;
`register(*args)` gets the arguments from the plugin's line in config/plugins.
One plugin object serves every session of a worker: per-session data belongs in
connection/transaction/address notes, never in attributes.
"""

import importlib.machinery
import importlib.util
import os
import re
import sys
from time import monotonic as _monotonic

from . import config as config_module
from . import constants as C
from .arguments import ArgumentError, parse_arguments
from .config import ConfigError
from .helpers.filecache import FileCache, ParsedLines
from .hooks import HOOK_SET, METHOD_TO_HOOK

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_session_resolver = None    # helpers.dns.session_resolver, imported on first use


def default_plugin_dirs():
    """The checkout's plugins/ beside the package, else the installed copy."""
    dirs = []
    for candidate in (os.path.join(os.path.dirname(_PACKAGE_DIR), "plugins"),
                      os.path.join(_PACKAGE_DIR, "_plugins")):
        if os.path.isdir(candidate):
            dirs.append(candidate)
    return dirs


class _Current:
    """The session whose hooks run now (one per process at a time): what `self.qp`
    is. The engine changes it at every connection, so it is an attribute of this
    object and not of the Plugin class: assigning a class attribute makes CPython
    drop its attribute caches of every plugin class (type version tags)."""

    __slots__ = ("session",)

    def __init__(self):
        self.session = None


CURRENT = _Current()          # the engine sets CURRENT.session; plugins read self.qp


class Plugin:
    """Base class of every plugin; see docs/plugin-api.md for the contract."""

    @property
    def qp(self):
        """The session (or pre-connection) whose hooks run now; None outside one."""
        return CURRENT.session

    #: the declared config/plugins arguments (qpsmtpd_py.arguments: Keyword, Positional,
    #: Flag ...); None = undeclared (an old plugin): key/value pairs, nothing checked
    arguments = None

    def __init__(self, app, plugin_name, args=()):
        self.app = app
        self.plugin_name = plugin_name
        self.args_list = list(args)
        self.args = {}
        self.loglevel_adjust = None      # (absolute, level) or (relative, delta)
        if self.arguments is not None:
            self.args = parse_arguments(plugin_name, self.arguments, self.args_list)
            if self.args.raw.get("loglevel") is not None:
                self.set_loglevel(self.args.raw["loglevel"])

    # -- lifecycle (override these) ---------------------------------------------------
    def init(self, *args):
        """Called before hooks are registered; rarely needed."""

    def register(self, *args):
        """Set up after the arguments are parsed (self.args). For a plugin without
        declared `arguments` the default keeps key/value pairs in self.args."""
        if self.arguments is None:
            self.args = parse_pairs(args)

    def register_hook(self, hook, method, unshift=False):
        """Register `method` (a name or callable) for `hook`."""
        func = getattr(self, method) if isinstance(method, str) else method
        self.app.hooks.add(hook, self, func, unshift)

    # -- session access -------------------------------------------------------------------
    @property
    def connection(self):
        qp = CURRENT.session
        return qp.connection if qp is not None else None

    @property
    def transaction(self):
        qp = CURRENT.session
        return qp.transaction if qp is not None else None

    # -- services: per process, opened on first use (after fork) ---------------------------
    @property
    def store(self):
        """The server's store (docs/store.md; LMDB or Redis): `self.store.table("greylist")`."""
        store = getattr(self.app, "_store", None)     # opened once per app (open_store)
        if store is not None:
            return store
        from .helpers.store import open_store
        return open_store(self.app)

    @property
    def resolver(self):
        """DNS with this session's answer cache (dns.SessionResolver):
        `pending = self.resolver.submit(name, "A")`, later `pending.result()`."""
        global _session_resolver
        if _session_resolver is None:     # dnspython only for plugins that use it
            from .helpers.dns import session_resolver as _session_resolver
        return _session_resolver(self.app, self.connection)

    # -- SMTP extensions: the engine calls for EHLO keywords and TLS ------------------------
    def add_capability(self, keyword):
        """Offer `keyword` (e.g. "STARTTLS", "X-FOO 1") in this EHLO reply; call it
        from an ehlo hook (each EHLO starts a new list)."""
        self.qp.add_capability(keyword)

    def provide_tls(self, context, description=""):
        """register(): make `context` (an ssl.SSLContext) the server's TLS settings."""
        from . import tls
        tls.install(self.app, context, description)

    def tls_available(self):
        """TLS can start on this connection now (settings provided, no TLS yet)."""
        from . import tls
        return self.qp is not None and tls.available(self.qp)

    def start_tls(self, implicit=False):
        """STARTTLS (answers 220, then the handshake; the client must EHLO again) or,
        with implicit=True, TLS before the greeting. Raises TLSFailed; after a failed
        STARTTLS the engine refuses mail commands with 550."""
        from . import tls
        tls.upgrade(self.qp, implicit=implicit)

    # -- config ---------------------------------------------------------------------------
    def config(self, name, default=None):
        """First line of config file `name` (config hooks first), else default."""
        return self.app.config.get(name, default)

    def config_list(self, name):
        """All lines of config file `name`."""
        return self.app.config.get_list(name)

    def config_map(self, name):
        """`name.cdb` as a CDB reader (None if absent)."""
        return self.app.config.get_map(name)

    def parsed_config(self, name, parser):
        """parser(lines) of config file `name` (the lines of config_list), cached
        in this process: the parser runs again only after the file changed. The
        config files are looked at again at most once a second (RECHECK_SECONDS),
        so within that time the result is handed back at once (many plugins ask
        on every message); not when a config hook answers (it may answer anew)."""
        recent = self.__dict__.get("_parsed_recent")
        if recent is None:
            recent = self.__dict__.setdefault("_parsed_recent", {})
        now = _monotonic()
        hit = recent.get(name)
        if (hit is not None and now - hit[0] < config_module.RECHECK_SECONDS
                and hit[1] == parser and self.app.config.hook is None):
            return hit[2]
        cache = self.__dict__.get("_parsed_config") or self.__dict__.setdefault(
            "_parsed_config", ParsedLines())
        result = cache.get(name, self.config_list(name), parser)
        recent[name] = (now, parser, result)
        return result

    def parsed_file(self, path, parser):
        """parser(text) of any file, cached until it changes; OSError if unreadable."""
        cache = self.__dict__.get("_parsed_files") or self.__dict__.setdefault(
            "_parsed_files", FileCache())
        return cache.get(path, parser)

    # -- liveness ---------------------------------------------------------------------------
    def keepalive(self):
        """Call now and then during long work in a hook (a scan, a forward) with no
        client I/O, so the server's watchdog does not kill the process as hung."""
        self.app.keepalive()

    # -- logging --------------------------------------------------------------------------
    def log(self, level, *msg):
        if self.loglevel_adjust is not None:
            level = self._adjust_level(level)
        app = self.app
        if level > app.loglevel and not app.hooks.registry["logging"]:
            return              # app.logs(level) written out: most INFO/DEBUG lines end here
        text = msg[0] if len(msg) == 1 and isinstance(msg[0], str) else " ".join(map(str, msg))
        app.log(level, text, hook=None, plugin=self.plugin_name)

    def logs(self, level):
        """Whether log(level, ...) would be written: skip building a costly line
        (an f-string with numbers, on every message) that nobody reads."""
        if self.loglevel_adjust is not None:
            level = self._adjust_level(level)
        return self.app.logs(level)

    def _adjust_level(self, level):
        """The level after this plugin's own loglevel (set_loglevel); log() calls it
        only when one was set."""
        kind, value = self.loglevel_adjust
        if kind == "relative":
            return max(0, min(7, level + value))
        # an absolute plugin loglevel L shows this plugin's messages up to L,
        # whatever the global loglevel, and hides the rest
        return min(level, self.app.loglevel) if level <= value else 99

    def set_loglevel(self, text):
        text = str(text).strip()
        if text[:1] in "+-" and text[1:].isdigit():
            self.loglevel_adjust = ("relative", -int(text))
        else:
            level = C.log_level(text)
            if level is None:
                raise ValueError(f"loglevel '{text}' is not a log level")
            self.loglevel_adjust = ("absolute", level)

    # -- policy helpers ---------------------------------------------------------------------
    def is_immune(self):
        """Relay clients and whitelisted hosts or senders skip policy checks."""
        qp = self.qp
        if qp is None:
            return False
        conn = qp.connection
        if conn is not None:
            if conn.relay_client:
                self.log(C.LOGINFO, "skip, relay client")
                return True
            if conn.notes.get("whitelisthost"):
                self.log(C.LOGINFO, "skip, whitelisted host")
                return True
        txn = qp.transaction
        if txn is not None and txn.notes.get("whitelistsender"):
            self.log(C.LOGINFO, "skip, whitelisted sender")
            return True
        return False

    def is_naughty(self, setit=None):
        """qpsmtpd's is_naughty. Without an argument: the connection note `naughty`
        (the deferred refusal text, false when there is none). With one: set the
        notes `naughty` and `rejected` to it; True when that marks the connection
        (later plugins may then skip their work)."""
        conn = self.connection
        if setit is None:
            return conn.notes.get("naughty") if conn is not None else None
        if conn is None:
            return False
        conn.notes["naughty"] = setit
        conn.notes["rejected"] = setit
        if setit:
            self.log(C.LOGINFO, "skip, naughty")
            return True
        return False

    def adjust_karma(self, value):
        """Add `value` to the connection note `karma` (an integer: this connection's
        score; the karma plugin records it per IP at disconnect). Returns value."""
        conn = self.connection
        if conn is not None:
            karma = (conn.notes.get("karma") or 0) + value
            conn.notes["karma"] = karma
            self.log(C.LOGINFO, f"karma {value} ({karma})")
        return value

    def store_deferred_reject(self, message):
        """`reject naughty`: note the refusal for the naughty plugin. The connection
        note `naughty` gets the first text; later ones are appended after CRLF.
        `naughty_reject_type` keeps the first plugin's reject_type."""
        conn = self.connection
        if conn is None:
            return C.DECLINED
        previous = conn.notes.get("naughty")
        conn.notes["naughty"] = f"{previous}\r\n{message}" if previous else message
        if not conn.notes.get("naughty_reject_type"):
            conn.notes["naughty_reject_type"] = self.args.get("reject_type")
        return C.DECLINED

    def store_auth_results(self, result):
        """Add `method=result` text to this message's Authentication-Results."""
        txn = self.transaction
        target = txn.notes if txn is not None else self.connection.notes
        target.setdefault("authentication_results", []).append(result)

    def get_reject_type(self, default=C.DENY, name="reject_type"):
        kind = str(self.args.get(name, "")).lower()
        return {
            "perm": C.DENY, "hard": C.DENY, "temp": C.DENYSOFT, "soft": C.DENYSOFT,
            "disconnect": C.DENY_DISCONNECT, "temp_disconnect": C.DENYSOFT_DISCONNECT,
        }.get(kind, default)

    def get_reject(self, message="", log_info=""):
        """What to return for a policy failure, honouring `reject` and `reject_type`.

        reject 0 logs 'fail, tolerated' and declines; reject naughty stores the
        rejection in the connection note `naughty` for the naughty plugin to apply.
        """
        reject = str(self.args.get("reject") or "1").lower()
        detail = f" ({log_info})" if log_info else ""
        if reject in ("0", "no", "false", "off"):
            self.log(C.LOGINFO, f"fail, tolerated{detail}")
            return C.DECLINED
        if reject == "naughty":
            self.log(C.LOGINFO, f"fail, NAUGHTY{detail}")
            return self.store_deferred_reject(f"({self.plugin_name}) {message}")
        self.log(C.LOGINFO, f"fail{detail}")
        return self.get_reject_type(), message

    # -- scratch files ------------------------------------------------------------------------
    def temp_file(self):
        return self.transaction.temp_file()

    def temp_dir(self):
        return self.transaction.temp_dir()

    @property
    def spool_dir(self):
        return self.app.spool_dir


def parse_pairs(args):
    """['reject', '0', 'loglevel', '6'] -> {'reject': '0', 'loglevel': '6'}."""
    if len(args) % 2:
        return {}
    return {str(args[i]).lower(): args[i + 1] for i in range(0, len(args), 2)}


def _module_name(plugin_name):
    escaped = re.sub(r"[^A-Za-z0-9_]", lambda m: "_%02x" % ord(m.group()), plugin_name)
    return "qpsmtpd_plugins." + escaped


_PERL_MARKS = re.compile(
    r"^#!.*\bperl\b|-\*-\s*perl\s*-\*-|\$self->|^\s*(?:use\s+(?:strict|warnings|Qpsmtpd)\b"
    r"|sub\s+\w+\s*\{|my\s+[$@%(]|package\s+[\w:]+\s*;|=(?:head\d|pod|cut)\b)", re.M)


def is_perl_plugin(path):
    """True for a qpsmtpd (Perl) plugin file: not Python, and Perl by its marks
    (#!perl, `use strict`, `sub register {`, `my $x`, `$self->`, POD)."""
    try:
        with open(path, "rb") as fh:
            source = fh.read(1 << 20).decode("utf-8", "replace")
    except OSError:
        return False
    try:
        compile(source, path, "exec")
        return False                  # valid Python, whatever it looks like
    except (SyntaxError, ValueError):
        return bool(_PERL_MARKS.search(source))


class PluginLoadError(Exception):
    """A plugin file that cannot be used; the text names the file."""


class PluginLoader:
    """Finds plugin files in the plugin dirs and turns them into Plugin objects.

    A file without .py that holds Perl (Debian's plugin_dirs point at qpsmtpd's
    /usr/share/qpsmtpd/plugins) is skipped with one log line, and our own plugin
    of that name is used: from a later plugin dir, else from default_plugin_dirs()."""

    current = None      # the loader at work, for isa_plugin()

    def __init__(self, dirs):
        self.dirs = list(dirs)
        self._classes = {}
        self.notices = []             # (level, text) for the next instantiate() to log
        self._perl_seen = set()

    def find(self, name):
        base = name.split(":", 1)[0]
        if ".." in base.split("/") or base.startswith("/"):
            return None
        perl = []
        dirs = self.dirs + [d for d in default_plugin_dirs() if d not in self.dirs]
        for i, directory in enumerate(dirs):
            if i >= len(self.dirs) and not perl:
                break                 # our own dirs only stand in for skipped Perl files
            for candidate in (os.path.join(directory, base + ".py"), os.path.join(directory, base)):
                if not os.path.isfile(candidate):
                    continue
                if not candidate.endswith(".py") and is_perl_plugin(candidate):
                    perl.append(candidate)
                    continue
                self._note_perl(perl, f"using qpsmtpd_py's own {base} ({candidate})")
                return candidate
        if perl:
            raise PluginLoadError(f"{perl[0]} is a Perl plugin (qpsmtpd_py runs only Python "
                                  f"plugins) and qpsmtpd_py has no plugin named {base}")
        return None

    def _note_perl(self, paths, outcome):
        for path in paths:
            if path not in self._perl_seen:
                self._perl_seen.add(path)
                self.notices.append((C.LOGWARN, f"skipping Perl plugin {path} (qpsmtpd_py "
                                                 f"runs only Python plugins); {outcome}"))

    def load_class(self, name):
        """The Plugin subclass that the file for `name` defines (cached per name)."""
        if name in self._classes:
            return self._classes[name]
        path = self.find(name)
        if path is None:
            raise LookupError(f"Plugin {name} not found in our plugin dirs ({', '.join(self.dirs)})")
        module_name = _module_name(name)
        loader = importlib.machinery.SourceFileLoader(module_name, path)
        spec = importlib.util.spec_from_file_location(module_name, path, loader=loader)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        previous, PluginLoader.current = PluginLoader.current, self
        try:
            spec.loader.exec_module(module)
        except SyntaxError as exc:
            del sys.modules[module_name]
            raise PluginLoadError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from exc
        except (PluginLoadError, ArgumentError):
            del sys.modules[module_name]
            raise
        except Exception as exc:      # ImportError, NameError ... at the plugin's top level
            del sys.modules[module_name]
            raise PluginLoadError(f"{path}: {type(exc).__name__}: {exc}") from exc
        finally:
            PluginLoader.current = previous
        classes = [obj for obj in vars(module).values()
                   if isinstance(obj, type) and issubclass(obj, Plugin) and obj.__module__ == module_name]
        if len(classes) != 1:
            raise LookupError(f"{path}: a plugin file must define exactly one Plugin subclass "
                              f"(found {len(classes)})")
        self._classes[name] = classes[0]
        return classes[0]

    def instantiate(self, app, name, args):
        try:
            cls = self.load_class(name)
        finally:
            while self.notices:
                app.log(*self.notices.pop(0))
        plugin = cls(app, name, args)
        if cls.arguments is None:
            _apply_standard_args(plugin, args)
        plugin.init(*args)
        for attr in dir(cls):
            hook = METHOD_TO_HOOK.get(attr)
            if hook is not None:
                app.hooks.add(hook, plugin, getattr(plugin, attr))
            elif attr.startswith("hook_") and callable(getattr(cls, attr)):
                raise ValueError(f"{name}: Invalid hook: {attr[5:]}")
        plugin.register(*args)
        return plugin


def _apply_standard_args(plugin, args):
    for i, arg in enumerate(args[:-1]):
        if str(arg).lower() == "loglevel":
            plugin.set_loglevel(args[i + 1])


def isa_plugin(name):
    """Inherit from another plugin file: `class Plugin(isa_plugin('relay')): pass`."""
    loader = PluginLoader.current
    if loader is None:
        loader = PluginLoader(default_plugin_dirs())
    return loader.load_class(name)


def load_plugins(app, lines, loader):
    """Instantiate every `name args...` line; errors name the config file and line."""
    plugins = []
    naughty = []                    # where `reject naughty` is asked for
    for line in lines:
        words = line.split()
        if not words:
            continue
        if not (line.isascii() and line.isprintable()):
            raise ConfigError(f"{line.origin}: unsafe characters in config line")
        name, args = words[0], words[1:]
        try:
            plugins.append(loader.instantiate(app, name, args))
            if str(plugins[-1].args.get("reject", "")).lower() == "naughty":
                naughty.append(f"{line.origin} ({name})")
        except ConfigError:
            raise
        except ArgumentError as exc:  # names the plugin, the argument and what it accepts
            raise ConfigError(f"{line.origin}: {exc}") from exc
        except Exception as exc:  # the admin needs file, line and the reason
            raise ConfigError(f"{line.origin}: cannot load plugin '{name}': {exc}") from exc
    if naughty and not any(p.plugin_name.split(":", 1)[0] == "naughty" for p in plugins):
        app.log(C.LOGWARN, "reject naughty, but no naughty plugin is loaded: these refusals are "
                "only noted, never applied: " + ", ".join(naughty))
    return plugins


__all__ = ["Plugin", "isa_plugin", "PluginLoader", "PluginLoadError", "load_plugins", "parse_pairs",
           "default_plugin_dirs", "is_perl_plugin", "HOOK_SET"]
