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

from qpsmtpd_py.api import LOG_NAMES, isa_plugin, line_text, session_id


class ConnectionId(isa_plugin("logging/warn")):
    # logging/warn's arguments, level filter and writing; only the line differs.
    def line(self, transaction, level, hook, plugin, msg):
        return (f"{self.ident(transaction)} {LOG_NAMES.get(level, level)}: "
                f"{line_text(hook, plugin, msg)}")

    def ident(self, transaction):
        session = getattr(self.app, "session", None)
        return session_id(session.connection if session is not None else None)
