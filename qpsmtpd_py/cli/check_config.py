"""`qpsmtpd-check-config DIR`: load a config directory (ours or a Perl qpsmtpd's) the
way the servers do, without serving, and report every line that needs attention with
its file and line -- all of them, where the server stops at the first (like
`postfix check` or `haraka -t`).

Errors are what would stop start-up (unknown plugins, Perl plugins without a
qpsmtpd_py equivalent, bad or unknown arguments, bad core settings); warnings are
what the server accepts but an admin should look at (a plugin_dirs line naming
qpsmtpd's Perl plugins, no queue plugin, warnings plugins log while loading).
Exit status: 0 nothing to report, 1 warnings only, 78 errors (EX_CONFIG), 64 usage.

Loading runs the plugins' register(), as the server's start does: a plugin may
create its directories or store (queue/maildir, karma ...). The spool directory is
only checked, never created or cleaned.
"""

import argparse
import os
import sys

from .. import __version__
from .. import constants as C
from ..app import Qpsmtpd
from ..arguments import ArgumentError
from ..config import Config, ConfigError
from ..plugin import PluginLoader, default_plugin_dirs, is_perl_plugin

EX_USAGE, EX_CONFIG = 64, 78


class Report:
    def __init__(self):
        self.items = []                 # (kind, text)

    def error(self, text):
        self.items.append(("error", text))

    def warning(self, text):
        self.items.append(("warning", text))

    @property
    def errors(self):
        return [t for k, t in self.items if k == "error"]


class CheckingApp(Qpsmtpd):
    """The server's app whose log lines at LOGWARN and worse become warnings of the
    report (nothing goes to logging plugins or stderr)."""

    def __init__(self, config, report):
        super().__init__(config)
        self.report = report
        self.check_only = True
        self.loglevel = C.LOGWARN        # the report's, whatever config/loglevel says

    def log(self, level, msg, hook=None, plugin=None):
        if str(msg).startswith("skipping Perl plugin "):
            return          # one warning on the plugin_dirs line says it for all
        if level <= C.LOGWARN:
            where = f"{plugin}: " if plugin else ""
            self.report.warning(f"{where}{msg}")


def perl_plugin_dirs(config, report):
    """plugin_dirs lines naming directories of Perl plugins, or missing ones."""
    dirs = []
    for line in config.get_list("plugin_dirs", use_hooks=False):
        path = line.strip()
        if not os.path.isdir(path):
            report.error(f"{line.origin}: plugin_dirs: {path} is not a directory")
            continue
        names = sorted(os.listdir(path))
        perl = [n for n in names if not n.endswith(".py")
                and os.path.isfile(os.path.join(path, n)) and is_perl_plugin(os.path.join(path, n))]
        if perl and not any(n.endswith(".py") for n in names):
            report.warning(f"{line.origin}: plugin_dirs: {path} holds qpsmtpd's Perl plugins; "
                           "qpsmtpd_py runs its own plugins of the same names instead "
                           "(remove this line)")
        dirs.append(path)
    return dirs


def load_plugin_lines(app, report):
    """Every config/logging and config/plugins line, each on its own."""
    config = app.config
    dirs = [d for d in config.get_list("plugin_dirs", use_hooks=False)] or default_plugin_dirs()
    app.loader = PluginLoader(dirs)
    lines = config.get_list("logging", use_hooks=False) + config.get_list("plugins", use_hooks=False)
    if not config.get_list("plugins", use_hooks=False):
        where = config.path("plugins") or os.path.join(config.dirs[0], "plugins")
        report.error(f"{where}: no plugins configured")
    for line in lines:
        words = line.split()
        if not words:
            continue
        if not (line.isascii() and line.isprintable()):
            report.error(f"{line.origin}: unsafe characters in config line")
            continue
        name, args = words[0], words[1:]
        try:
            app.plugins.append(app.loader.instantiate(app, name, args))
        except ConfigError as exc:
            report.error(str(exc))
        except ArgumentError as exc:
            report.error(f"{line.origin}: {exc}")
        except Exception as exc:          # noqa: BLE001  every plugin gets its line
            report.error(f"{line.origin}: cannot load plugin '{name}': {exc}")
    app.loader.notices.clear()


def check_core(app, report):
    """The core settings the server reads at start-up (app._read_core), the spool
    directory checked but not created."""
    try:
        app._read_loglevel()              # checked only: the report keeps LOGWARN
    except ConfigError as exc:
        report.error(str(exc))
    try:
        app._read_core()
    except ConfigError as exc:
        report.error(str(exc))
    spool = app.config.get("spool_dir")
    if spool:
        path = app.spool_dir
        if os.path.exists(path) and not os.path.isdir(path):
            report.error(f"{spool.origin}: spool_dir {path} is not a directory")
        elif not os.path.exists(path) and not os.access(_existing_parent(path), os.W_OK):
            report.error(f"{spool.origin}: spool_dir {path} does not exist and cannot be created")


def _existing_parent(path):
    while path and not os.path.exists(path):
        path = os.path.dirname(path.rstrip("/")) or "/"
    return path


def read_every_file(config):
    """Read each text file of the directory once, as plugins will in sessions, so a
    broken `$include` anywhere (rcpthosts, badmailfrom ...) is reported now."""
    directory = config.dirs[0]
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if name.startswith(".") or name.endswith((".cdb", "~")) or not os.path.isfile(path):
            continue
        try:
            config.get_list(name, use_hooks=False)
        except (ConfigError, UnicodeDecodeError, OSError):
            pass                # the loader reports what the server itself reads


def check(config_dir):
    """The Report for one config directory."""
    report = Report()
    if not os.path.isdir(config_dir):
        report.error(f"{config_dir}: not a directory")
        return report
    config = Config([os.path.abspath(config_dir)])
    app = CheckingApp(config, report)
    config.log = lambda level, msg: app.log(level, msg)
    perl_plugin_dirs(config, report)
    check_core(app, report)
    load_plugin_lines(app, report)
    read_every_file(config)
    if app.plugins and not app.hooks.has("queue"):
        where = config.path("plugins")
        report.warning(f"{where}: no queue plugin: every message would be refused with "
                       "451 (add queue/maildir, queue/smtp-forward, queue/lmtp ...)")
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="qpsmtpd-check-config",
        description="Load a qpsmtpd or qpsmtpd_py config directory without serving and "
                    "report every line that needs attention (file:line). Exit status: 0 "
                    "clean, 1 warnings only, 78 errors that stop start-up.")
    parser.add_argument("dir", metavar="DIR", help="the config directory (e.g. /etc/qpsmtpd-py)")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing; exit status only")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    args = parser.parse_args(argv)
    report = check(args.dir)
    if not args.quiet:
        for kind, text in report.items:
            print(f"{kind}: {text}")
        errors, warnings = len(report.errors), len(report.items) - len(report.errors)
        print(f"{args.dir}: {errors} error(s), {warnings} warning(s)"
              + (" -- the server would not start" if errors else ""))
    if report.errors:
        return EX_CONFIG
    return 1 if report.items else 0


if __name__ == "__main__":
    sys.exit(main())
