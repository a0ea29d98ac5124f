"""logging/connection_id - write log lines to standard error, like logging/warn, but
starting with the connection's id instead of the process id, so the lines of one
session can be picked out of a busy log (grep ID).

The id is the server's id for the connection, else one made when the session
starts (time-pid-counter, the %i of logging/file); "parent" outside a session.

Arguments: [LEVEL] or loglevel LEVEL  (0-7 or LOGINFO ...; default config/loglevel)
Hooks: logging.  Example config/logging line:  logging/connection_id LOGINFO

Differences from qpsmtpd: works (qpsmtpd's stopped start-up with "The connection ID
feature is currently unsupported").
"""

import sys

from qpsmtpd_py.api import (
    DECLINED, LOG_NAMES, OK, Keyword, LogLevel, Plugin, Positional, line_text, session_id,
)


class ConnectionId(Plugin):
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
        sys.stderr.write(f"{self.ident(transaction)} {LOG_NAMES.get(level, level)}: "
                         f"{line_text(hook, plugin, msg)}\n")
        sys.stderr.flush()
        return OK

    def ident(self, transaction):
        session = getattr(self.app, "session", None)
        return session_id(session.connection if session is not None else None)
