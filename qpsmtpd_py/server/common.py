"""Start-up shared by every server mode: options, loading, session creation."""

import argparse
import os
import sys

from .. import constants as C
from ..app import Qpsmtpd, early_log
from ..config import Config, ConfigError, config_dirs
from ..connection import Connection
from ..plugin import PluginLoader, default_plugin_dirs
from ..session import SMTPSession


class ServerArgumentParser(argparse.ArgumentParser):
    """The servers' option parser: a usage error is a journal error line like every
    other start-up error (under systemd, `journalctl -p err` shows a bad ExecStart)."""

    def error(self, message):
        early_log(C.LOGERROR, self.format_usage() + f"{self.prog}: error: {message}")
        sys.exit(2)


def load_app():
    """A freshly loaded server; raises ConfigError naming file and line (SIGHUP
    reload builds a new one so a broken config never replaces a working one)."""
    return Qpsmtpd(Config(config_dirs())).load()


def import_plugin_modules(rdns=True):
    """Import the configured plugins' files (module code only, no plugin object is
    made) while the process is still root: they, and the standard-library modules
    they import, may be unreadable after --user (a Python under /root). Errors are
    left for the real load, which reports them with file and line. With `rdns` the
    engine's PTR lookup code too (imported only when needed: see preload_dns)."""
    if rdns:
        preload_dns()
    config = Config(config_dirs())
    loader = PluginLoader(config.get_list("plugin_dirs") or default_plugin_dirs())
    for line in config.get_list("logging") + config.get_list("plugins"):
        words = line.split()
        try:
            if words:
                loader.load_class(words[0])
        except Exception:       # noqa: BLE001  reported by the real load
            pass
    if str(config.get("store_backend") or "").strip().lower() == "redis":
        try:                    # the store's client library, and the stdlib it pulls in
            import redis  # noqa: F401
            from importlib import metadata
            from ..helpers import store_redis  # noqa: F401
            # a client reads its version from the package metadata when it connects
            # (redis-py >= 5): that loads email.parser, in the child, after --user
            metadata.version("redis")
        except ImportError:     # reported by the real load (check_store names the extra);
            pass                # also metadata's PackageNotFoundError


def preload_dns():
    """dnspython and the PTR lookups' code (helpers/dns.py, with its shared negative
    cache page) in the master before forking, when reverse DNS is on; a server
    started with -H and no DNS plugin never maps them."""
    from ..helpers import dns  # noqa: F401


def build_app(config_dir=None):
    """Load config and plugins or exit with the error (file and line) on stderr."""
    if config_dir:
        os.environ["QPSMTPD_CONFIG"] = config_dir
    try:
        app = load_app()
    except ConfigError as exc:
        early_log(C.LOGERROR, f"qpsmtpd: configuration error: {exc}")
        sys.exit(78)     # EX_CONFIG
    return app


def run_session(app, channel, connection):
    """Run one SMTP session; returns when the client is gone."""
    channel.timeout = app.timeout
    SMTPSession(app, channel, connection).run()


def new_connection(remote, local, smtps=False, remote_host=None, remote_info=None):
    """Connection from (ip, port) pairs; IPv4-mapped IPv6 addresses are unwrapped."""
    remote_ip, remote_port = unmapped_ip(remote[0]), int(remote[1])
    local_ip, local_port = unmapped_ip(local[0]), int(local[1])
    return Connection(remote_ip, remote_port, local_ip, local_port,
                      remote_host=remote_host, remote_info=remote_info, smtps=smtps)


def unmapped_ip(ip):
    """An IP as plugins see it: IPv4-mapped IPv6 addresses unwrapped."""
    ip = str(ip)
    if ip.lower().startswith("::ffff:") and "." in ip:
        return ip[7:]
    return ip
