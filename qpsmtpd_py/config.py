"""A qpsmtpd config directory: flat files, `$include`, cdb maps and defaults.

Lookup is per name, as in qpsmtpd: `$QPSMTPD_CONFIG/<name>`, then
`./config/<name>`, then `$QMAIL/control/<name>` (QMAIL defaults to /var/qmail).
Values are cached; a changed file is noticed within a second, and `clear()`
(on SIGHUP) forgets everything.
"""

import os
import socket
import time

from .helpers.cdb import CDB


class ConfigError(Exception):
    """A config file the server cannot start with; the text names file and line."""


class ConfigLine(str):
    """One value, remembering the file and line it came from (for error messages)."""

    path = None
    lineno = 0

    def __new__(cls, value, path=None, lineno=0):
        line = super().__new__(cls, value)
        line.path = path
        line.lineno = lineno
        return line

    @property
    def origin(self):
        return f"{self.path}:{self.lineno}" if self.path else "(built-in default)"


def beside(path, config_file):
    """A relative path read from a config file, taken relative to that file's
    directory, so a config directory works whatever the server's working directory
    (systemd starts it in /). Absolute paths, and values of no file, are unchanged."""
    if not path or os.path.isabs(path) or not config_file:
        return path
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(config_file)), path))


def _default_me():
    return socket.gethostname() or "localhost"


DEFAULTS = {
    "me": _default_me,
    "timeout": "1200",
    "smtpgreeting": None,
    "spool_dir": None,
    "size_threshold": "10000",
    "loglevel": "5",                # LOGNOTICE: refusals and summaries (app.DEFAULT_LOGLEVEL)
}

RECHECK_SECONDS = 1.0


def config_dirs(environ=None):
    """Directories searched for config files, in order."""
    environ = os.environ if environ is None else environ
    dirs = []
    if environ.get("QPSMTPD_CONFIG"):
        dirs.append(environ["QPSMTPD_CONFIG"])
    dirs.append(os.path.join(os.getcwd(), "config"))
    dirs.append(os.path.join(environ.get("QMAIL", "/var/qmail"), "control"))
    return dirs


class Config:
    """Reads config values by name. `hook`, if set, may answer before the files do."""

    def __init__(self, dirs=None, log=None):
        self.dirs = list(dirs) if dirs else config_dirs()
        self.hook = None
        self.log = log or (lambda level, msg: None)
        self._cache = {}       # name -> (checked_at, signature, values)
        self._maps = {}        # name -> (checked at, signature, CDB or None)

    def clear(self):
        self._cache.clear()
        self._maps.clear()

    def path(self, name):
        """The file that holds `name`, or None."""
        for directory in self.dirs:
            candidate = os.path.join(directory, name)
            if os.path.isfile(candidate):
                return candidate
        return None

    # -- public lookups ---------------------------------------------------------
    def get_list(self, name, use_hooks=True):
        """Every value line of `name` ([] if absent and no default)."""
        if use_hooks and self.hook is not None:
            answer = self.hook(name)
            if answer is not None:
                return [ConfigLine(str(v)) for v in answer]
        values = self._file_values(name)
        if values is None:
            default = DEFAULTS.get(name)
            if callable(default):
                default = default()
            return [] if default is None else [ConfigLine(default)]
        return values

    def get(self, name, default=None, use_hooks=True):
        """The first value line of `name`, else `default`."""
        values = self.get_list(name, use_hooks)
        return values[0] if values else default

    def get_int(self, name, default=0):
        value = self.get(name)
        if value is None:
            return default
        try:
            return int(value.split()[0])
        except (ValueError, IndexError):
            raise ConfigError(f"{value.origin}: {name}: '{value}' is not a whole number")

    def get_bool(self, name, default=False):
        value = self.get(name)
        if value is None:
            return default
        return value.strip().lower() not in ("", "0", "no", "false", "off")

    def get_map(self, name):
        """`<name>.cdb` as a CDB reader, or None when there is no such file. Like
        the other files, looked for again at most every RECHECK_SECONDS (most
        connections ask for a map that is not there: morerelayclients)."""
        now = time.monotonic()
        cached = self._maps.get(name)
        if cached and now - cached[0] < RECHECK_SECONDS:
            return cached[2]
        path = self.path(name + ".cdb")
        if path is None:
            self._maps[name] = (now, None, None)
            return None
        signature = _signature(path)
        if cached and cached[1] == signature and cached[2] is not None:
            self._maps[name] = (now, signature, cached[2])
            return cached[2]
        try:
            reader = CDB(path)
        except (OSError, ValueError) as exc:
            self.log(3, f"cannot read {path}: {exc}")
            return None
        self._maps[name] = (now, signature, reader)
        return reader

    # -- files ------------------------------------------------------------------
    def _file_values(self, name):
        now = time.monotonic()
        cached = self._cache.get(name)
        if cached and now - cached[0] < RECHECK_SECONDS:
            return cached[2]
        path = self.path(name)
        signature = _signature(path) if path else None
        if cached and cached[1] == signature and signature is not None and not cached[3]:
            self._cache[name] = (now, signature, cached[2], False)
            return cached[2]
        if path is None:
            self._cache[name] = (now, None, None, False)
            return None
        included = []
        values = self.read_file(path, included)
        # files pulled in by $include are not tracked for changes: re-read on each recheck
        self._cache[name] = (now, signature, values, bool(included))
        return values

    def read_file(self, path, included=None, _seen=None):
        """Values of one file: trimmed, comments and blanks dropped, `$include` expanded."""
        _seen = set() if _seen is None else _seen
        real = os.path.realpath(path)
        if real in _seen:
            self.log(3, f"{path}: circular $include ignored")
            return []
        _seen.add(real)
        values = []
        try:
            with open(path, "rb") as fh:
                raw_lines = fh.read().decode("utf-8", "surrogateescape").splitlines()
        except OSError as exc:
            self.log(3, f"cannot read {path}: {exc}")
            return []
        for lineno, raw in enumerate(raw_lines, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("$include"):
                target = line[len("$include"):].strip()
                if included is not None:
                    included.append(target)
                values.extend(self._include(target, path, lineno, included, _seen))
                continue
            values.append(ConfigLine(line, path, lineno))
        return values

    def _include(self, target, from_path, lineno, included, seen):
        if not target:
            raise ConfigError(f"{from_path}:{lineno}: $include needs a file or directory name")
        if not os.path.isabs(target):
            found = self.path(target)
            if found is None:
                relative = os.path.join(os.path.dirname(from_path), target)
                found = relative if os.path.exists(relative) else None
            if found is None:
                self.log(3, f"{from_path}:{lineno}: $include {target}: not found")
                return []
            target = found
        if os.path.isdir(target):
            values = []
            for entry in sorted(os.listdir(target)):
                if not entry.startswith("."):
                    values.extend(self.read_file(os.path.join(target, entry), included, seen))
            return values
        if not os.path.exists(target):
            self.log(3, f"{from_path}:{lineno}: $include {target}: not found")
            return []
        return self.read_file(target, included, seen)


def _signature(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)
