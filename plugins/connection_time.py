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

from qpsmtpd_py.api import DECLINED, LOGINFO, LogLevel, Plugin, Positional


class ConnectionTime(Plugin):
    arguments = (
        Positional("LEVEL", LogLevel(), LOGINFO, "the level of the line (qpsmtpd 0.94 style)"),
    )

    def register(self, *args):
        self.level = self.args["LEVEL"]

    def hook_post_connection(self, transaction, *args):
        elapsed = time.time() - self.qp.started
        self.log(self.level, f"{elapsed:.3f} s. ({self.connection.remote_ip})")
        return DECLINED
