"""naughty - refuse naughty connections at one chosen point of the session.

Plugins with `reject naughty` do not refuse a client themselves: they note the
refusal (connection note `naughty`, "(plugin) message"; several are joined by
CRLF and become a multi-line reply) and this plugin applies it at the hook you
choose, so every plugin refuses at the same point. Rejecting after RCPT lets
roaming users authenticate first (a successful AUTH clears the note), rejecting
at data_post lets content filters learn from the message first.

Arguments:
  reject connect|mail|rcpt|data|data_post|queue_post   where to refuse (default rcpt)
  reject_type T   default disconnect; a refusing plugin's own reject_type (connection
                  note naughty_reject_type) wins
It always hooks data_post as well, in case a plugin of the chosen hook answered
first (rcpt_ok's OK ends the rcpt chain before naughty runs: list naughty before
rcpt_ok, or choose data).

Replies: the noted text(s), with the reject_type's code: DENY_DISCONNECT by
default (550/554/552 and the connection is closed).
Notes read: naughty, naughty_reject_type.

Example config/plugins lines:
  dnsbl reject naughty
  karma reject naughty
  naughty reject data
With this plugin loaded the start-up warning "reject naughty, but no naughty plugin
is loaded" does not appear.

Differences from qpsmtpd: an unknown hook name stops start-up (qpsmtpd logged it
and fell back to data_post); `hook_queue_post` is accepted as qpsmtpd spelled it.
"""

from qpsmtpd_py.api import (
    DECLINED, DENY, DENY_DISCONNECT, DENYSOFT, DENYSOFT_DISCONNECT, LOGINFO, REJECT_TYPE, Choice,
    Keyword, Plugin,
)

HOOKS = ("connect", "mail", "rcpt", "data", "data_post", "queue_post")
TYPES = {"perm": DENY, "hard": DENY, "temp": DENYSOFT, "soft": DENYSOFT,
         "disconnect": DENY_DISCONNECT, "temp_disconnect": DENYSOFT_DISCONNECT}


class Naughty(Plugin):
    arguments = (
        Keyword("reject", Choice(*HOOKS, aliases={"hook_queue_post": "queue_post"}), "rcpt",
                "the hook at which naughty connections are refused"),
        REJECT_TYPE.but(default="disconnect"),
    )

    def register(self, *args):
        hook = self.args["reject"]
        self.register_hook(hook, self.naughty)
        if hook not in ("data_post", "queue_post"):
            self.register_hook("data_post", self.naughty)

    def naughty(self, transaction, *args):
        text = self.connection.notes.get("naughty")
        if not text:
            self.log(LOGINFO, "pass")
            return DECLINED
        self.log(LOGINFO, "disconnecting")
        kind = str(self.connection.notes.get("naughty_reject_type") or self.args["reject_type"]
                   or "disconnect").lower()
        lines = [line for line in str(text).replace("\r\n", "\n").split("\n") if line]
        return (TYPES.get(kind, DENY_DISCONNECT), *lines)
