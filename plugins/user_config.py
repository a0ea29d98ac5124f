"""user_config - per-user configuration directories, like the global config directory
but one for each recipient (or sender): plugins that ask the user_config hook
(whitelist, greylisting per_recipient ...) get the user's own settings.

For address user@host and config name NAME the file PATTERN/NAME is read, where in
PATTERN %u is the user (local part), %h the host and %a the whole address; its lines
(blank lines and # comments dropped) are the answer. Without the file the plugin
declines, and the caller uses the global config.

Arguments:  [PATTERN]   default /home/%u/.qpsmtpd
Hooks: user_config.  Examples:
  user_config
  user_config /var/lib/qpsmtpd/users/%h/%u

Safety: an address whose user or host would leave the directory (a /, a leading
dot, a NUL or control character) gets no per-user config; such local parts are legal
in SMTP, so the plugin never builds a path from them.

Differences from qpsmtpd: blank and # lines are dropped (qpsmtpd passed every line
on), and unsafe addresses never reach the file system.
"""

import os
import re

from qpsmtpd_py.api import DECLINED, LOGNOTICE, OK, Plugin, Positional, Text

_UNSAFE = re.compile(r"[/\\\x00-\x1f\x7f]|^\.|^$")


class UserConfig(Plugin):
    arguments = (
        Positional("PATTERN", Text(), "/home/%u/.qpsmtpd",
                   "the user's directory: %u user, %h host, %a address"),
    )

    def hook_user_config(self, transaction, address, name):
        user, host = address.user or "", (address.host or "").lower()
        if _UNSAFE.search(user) or (host and _UNSAFE.search(host)) or _UNSAFE.search(name):
            return DECLINED
        path = (self.args["PATTERN"].replace("%u", user).replace("%h", host)
                .replace("%a", f"{user}@{host}" if host else user))
        filename = os.path.join(path, name)
        if not os.path.isfile(filename):
            return DECLINED
        try:
            with open(filename, encoding="utf-8", errors="surrogateescape") as fh:
                lines = [line.strip() for line in fh]
        except OSError as exc:
            self.log(LOGNOTICE, f"Couldn't open {filename}: {exc.strerror}")
            return DECLINED
        return (OK, *[line for line in lines if line and not line.startswith("#")])
