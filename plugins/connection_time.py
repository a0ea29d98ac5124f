"""connection_time - log how long each SMTP session lasted.

At the end of every connection one line is logged, by default at LOGINFO:

  connection_time: 2.314 s. (192.0.2.10)

Arguments:
  loglevel N|+N|-N   the usual plugin loglevel adjustment (`loglevel +1` logs less)
  LEVEL              one level name or number alone (qpsmtpd 0.94 style, e.g.
                     LOGNOTICE): the level of the line
The time counts from the start of the session (after accept or fork) to the
post-connection hook.

Hooks: post-connection.  Example config/plugins line:  connection_time
"""

import time

from qpsmtpd_py.constants import DECLINED, LOGINFO, log_level
from qpsmtpd_py.plugin import Plugin


class ConnectionTime(Plugin):
    def register(self, *args):
        self.level = LOGINFO
        if len(args) == 1:
            level = log_level(args[0])
            if level is None:
                raise ValueError(f"'{args[0]}' is not a log level")
            self.level = level
        elif len(args) % 2:
            raise ValueError("arguments must be one log level or name/value pairs")
        else:
            super().register(*args)

    def hook_post_connection(self, transaction, *args):
        elapsed = time.time() - self.qp.started
        self.log(self.level, f"{elapsed:.3f} s. ({self.connection.remote_ip})")
        return DECLINED
