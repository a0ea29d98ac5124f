"""count_unrecognized_commands - disconnect clients that send too many unknown commands.

Clients that are not mail software at all (HTTP requests through open proxies,
scanners, confused scripts) send lines that are no SMTP command. Each gets the
core's `500 Unrecognized command`; when the count for the connection reaches the
maximum the client is told

  521 Closing connection, 4 unrecognized commands. Perhaps you should read RFC 2821?

and disconnected.

Arguments:  [max]   unrecognized commands allowed per connection, default 4
                    (the max-th one gets the 521)
Notes: connection note `unrec_cmd_count` holds the count (reset at connect).
Hooks: connect, unrecognized_command. Load it after plugins that implement extra
verbs through unrecognized_command (tls for STARTTLS, stunnel for PROXY), so
their verbs are not counted.
Example config/plugins line:  count_unrecognized_commands 4
"""

from qpsmtpd_py.api import (
    DECLINED, DENY_DISCONNECT, LOGINFO, LOGWARN, Int, Plugin, Positional, Text,
)


class CountUnrecognizedCommands(Plugin):
    arguments = (
        Positional("max", Int(min=0), 4, "unrecognized commands allowed per connection "
                   "(the max-th one gets the 521)"),
        Positional("ignored", Text(), (), "further words are ignored with a warning, as in "
                   "qpsmtpd", many=True),
    )

    def register(self, *args):
        self.max = self.args["max"]
        if self.args["ignored"]:
            self.log(LOGWARN, "Ignoring additional arguments.")

    def hook_connect(self, transaction):
        self.connection.notes["unrec_cmd_count"] = 0
        return DECLINED

    def hook_unrecognized_command(self, transaction, verb, rest=""):
        notes = self.connection.notes
        count = notes.get("unrec_cmd_count", 0) + 1
        notes["unrec_cmd_count"] = count
        self.log(LOGINFO, f"Unrecognized command '{verb[:32]}'")
        if count >= self.max:
            msg = f"Closing connection, {count} unrecognized commands."
            self.log(LOGINFO, f"fail: {msg}")
            return DENY_DISCONNECT, f"{msg} Perhaps you should read RFC 2821?"
        return DECLINED
