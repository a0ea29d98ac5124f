"""noop_counter - disconnect clients that send too many NOOPs in a row.

A client that keeps a connection open with endless NOOPs ties up a server slot.
Every NOOP counts; any other command (HELO, EHLO, MAIL, RCPT, DATA, RSET, VRFY,
HELP) starts the count again. The max-th consecutive NOOP is answered with

  500 Stop wasting my time, too many consecutive NOOPs

and the connection is closed.

Arguments:  [max]   consecutive NOOPs that end the session, default 3
Notes: connection note `noop_count`.
Hooks: noop; the counter resets on helo, ehlo, mail, rcpt, data, vrfy, help and
reset_transaction. Those reset hooks are registered ahead of other plugins, so
the load order does not matter.
Example config/plugins line:  noop_counter 5
"""

from qpsmtpd_py.api import DECLINED, DENY_DISCONNECT, LOGINFO, Int, Plugin, Positional

RESET_HOOKS = ("helo", "ehlo", "mail", "rcpt", "data", "vrfy", "help", "reset_transaction")


class NoopCounter(Plugin):
    arguments = (
        Positional("max", Int(min=0), 3, "consecutive NOOPs that end the session"),
    )

    def register(self, *args):
        self.max = self.args["max"]
        for hook in RESET_HOOKS:
            self.register_hook(hook, self.reset_counter, unshift=True)

    def hook_noop(self, transaction, *args):
        notes = self.connection.notes
        notes["noop_count"] = notes.get("noop_count", 0) + 1
        if notes["noop_count"] >= self.max:
            self.log(LOGINFO, f"fail, {notes['noop_count']} consecutive NOOPs")
            return DENY_DISCONNECT, "Stop wasting my time, too many consecutive NOOPs"
        return DECLINED

    def reset_counter(self, transaction, *args):
        if self.connection is not None:
            self.connection.notes["noop_count"] = 0
        return DECLINED
