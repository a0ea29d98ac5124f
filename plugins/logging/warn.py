"""logging/warn - write log lines at or below a level to standard error.

Arguments: [loglevel]  (a number 0-7 or a name like LOGINFO; default: config/loglevel)
Hooks: logging.  Example config/logging line:  logging/warn LOGINFO
"""

import os
import sys

from qpsmtpd_py.constants import DECLINED, LOG_NAMES, OK, log_level
from qpsmtpd_py.plugin import Plugin


class Warn(Plugin):
    def register(self, *args):
        level = log_level(args[0]) if args else None
        self.level = self.app.loglevel if level is None else level

    def hook_logging(self, transaction, level, hook, plugin, msg):
        if level > self.level:
            return DECLINED
        where = f" ({hook})" if hook else ""
        who = f" {plugin}:" if plugin else ""
        sys.stderr.write(f"{os.getpid()}{where}{who} {LOG_NAMES.get(level, level)}: {msg}\n")
        sys.stderr.flush()
        return OK
