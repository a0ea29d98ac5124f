"""loop - refuse a message that has passed through too many mail servers (a mail loop).

Every server that handles a message adds a Received header field, and every local
delivery a Delivered-To field. When two servers (or two forwarding mailboxes) send a
message to each other forever, those fields pile up. This plugin counts the
Received and Delivered-To fields of the message after DATA, our own Received line
included (it is added before this check runs, as in qpsmtpd), and refuses the
message when the count reaches max_hops:

  552 Too many hops (#5.4.6)

(after EHLO: `552 5.4.6 Too many hops (#5.4.6)`). The limit is qmail-smtpd's. With the
default of 100, a message that arrives with 98 such fields is accepted (98 + ours =
99) and one with 99 is refused. qmail-smtpd answers a loop with `554 too many hops,
this message is looping (#5.4.6)`; qpsmtpd, and so this plugin, with the text above.

Arguments:
  N  or  max_hops N   the count that is refused (a whole number, at least 1;
                      default 100). `loop 30` and `loop max_hops 30` are the same.
  loglevel            as for every plugin
A value that is not a whole number of at least 1, or any other word, stops the
server at start-up with config/plugins and the line (qpsmtpd logged "Invalid
max_hops value -- using default" and went on with 100).

Also loadable under its old name `check_loop` (Debian's config/plugins enables
`check_loop`). Debian's qpsmtpd 0.94 check_loop wrapper loses the limit and
refuses every message as looping; `check_loop` here is this plugin, arguments
included, and refuses only real loops.

Hooks: data_post.
Examples:
  loop
  check_loop 50
"""

from qpsmtpd_py.api import DECLINED, DENY, LOGDEBUG, LOGINFO, Int, Plugin, Positional

DEFAULT_MAX_HOPS = 100
MESSAGE = "Too many hops (#5.4.6)"
TRACE_FIELDS = ("Received", "Delivered-To")


class Loop(Plugin):
    arguments = (
        Positional("max_hops", Int(min=1), DEFAULT_MAX_HOPS, "the count of Received and "
                   "Delivered-To fields that is refused", keyword=True),
    )

    def register(self, *args):
        self.max_hops = self.args["max_hops"]

    def hook_data_post(self, transaction):
        hops = sum(transaction.header.count(name) for name in TRACE_FIELDS)
        if hops >= self.max_hops:
            self.log(LOGINFO, f"fail, {hops} Received/Delivered-To fields (max_hops {self.max_hops})")
            return DENY, MESSAGE
        self.log(LOGDEBUG, f"pass, {hops} hops")
        return DECLINED

