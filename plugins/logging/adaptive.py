"""logging/adaptive - log rejected mail in detail and accepted mail briefly.

Config line (in config/logging, or config/plugins):

  logging/adaptive [accept L] [reject L] [prefix C]

Every log line at level `reject` or more urgent goes to standard error at once,
as `<pid> (<hook>) <plugin>: <message>`. Lines at level `accept` or more urgent
are also kept for the transaction; when the transaction ends (the next MAIL,
RSET, the end of the message, or the connection) without any plugin having
denied anything, they are written again, marked with the prefix:

  <pid> <prefix> (<hook>) <plugin>: <message>

So one log stream holds the details of every refusal, and the lines carrying the
prefix tell the story of accepted mail at the `accept` level. With multilog,
for example:

  exec multilog t n10 '-*` *' ./main/detailed '-*' '+*` *' ./main/accepted

Options:
  accept L   level for accepted transactions; default LOGERROR (3)
  reject L   level for everything else; default LOGWARN (4)
             (L: 0-7 or LOGINFO ...)
  prefix C   marker of the accepted lines; default ` (backquote)

Hooks: logging, deny, reset_transaction, post-connection.
Example:  logging/adaptive accept LOGNOTICE reject LOGDEBUG
"""

import os

from qpsmtpd_py.api import DECLINED, LOGERROR, LOGWARN, Keyword, LogLevel, Plugin, Text, line_text

BUFFER = "logging_adaptive_lines"
DENIED = "logging_adaptive_denied"
MAX_BUFFERED = 10000


class Adaptive(Plugin):
    arguments = (
        Keyword("accept", LogLevel(), LOGERROR, "level kept for accepted transactions"),
        Keyword("reject", LogLevel(), LOGWARN, "level written at once (everything else)"),
        Keyword("prefix", Text(), "`", "marker of the accepted lines"),
    )

    def register(self, *args):
        self.accept = self.args["accept"]
        self.reject = self.args["reject"]
        self.prefix = self.args["prefix"]

    def hook_logging(self, transaction, level, hook, plugin, msg):
        if plugin == self.plugin_name:
            return DECLINED
        text = line_text(hook, plugin, msg)
        if level <= self.reject:
            self.write(f"{os.getpid()} {text}")
        conn = self.connection
        if level <= self.accept and conn is not None:
            lines = conn.notes.setdefault(BUFFER, [])
            if len(lines) < MAX_BUFFERED:
                lines.append(text)
        return DECLINED

    def hook_deny(self, transaction, plugin_name, code, text):
        self.connection.notes[DENIED] = True
        return DECLINED

    def hook_reset_transaction(self, transaction):
        self.flush()
        return DECLINED

    def hook_post_connection(self, transaction, *args):
        self.flush()
        return DECLINED

    def flush(self):
        """End of a transaction: replay its lines with the prefix unless denied."""
        notes = self.connection.notes
        lines = notes.pop(BUFFER, [])
        if not notes.pop(DENIED, False):
            for text in lines:
                self.write(f"{os.getpid()} {self.prefix} {text}")

    def write(self, line):
        stderr = self.app.stderr
        stderr.write(line + "\n")
        stderr.flush()
