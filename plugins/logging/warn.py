"""logging/warn - write log lines at or below a level to standard error.

Arguments: [LEVEL] or loglevel LEVEL  (a number 0-7 or a name like LOGINFO; default:
config/loglevel); a word that is no log level stops start-up.
Hooks: logging.  Example config/logging line:  logging/warn LOGINFO
"""

import os
import sys

from qpsmtpd_py.api import DECLINED, LOG_NAMES, OK, Keyword, LogLevel, Plugin, Positional


class Warn(Plugin):
    arguments = (
        Positional("LEVEL", LogLevel(), None, "write lines at this level and more urgent "
                   "(default: config/loglevel)"),
        Keyword("loglevel", LogLevel(), None, "the same, written as a keyword"),
    )

    def register(self, *args):
        level = self.args["LEVEL"] if self.args["LEVEL"] is not None else self.args["loglevel"]
        self.level = self.app.loglevel if level is None else level

    def hook_logging(self, transaction, level, hook, plugin, msg):
        if level > self.level:
            return DECLINED
        sys.stderr.write(self.line(transaction, level, hook, plugin, msg) + "\n")
        sys.stderr.flush()
        return OK

    def line(self, transaction, level, hook, plugin, msg):
        """The text written for one log line (logging/connection_id words it otherwise)."""
        where = f" ({hook})" if hook else ""
        who = f" {plugin}:" if plugin else ""
        return f"{os.getpid()}{where}{who} {LOG_NAMES.get(level, level)}: {msg}"
