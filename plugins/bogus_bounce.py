"""bogus_bounce - spot bounces (null sender) that cannot be real ones.

A bounce (MAIL FROM:<>) goes back to the one sender of the message that failed, so
it has exactly one recipient; and RFC 3834 says its Return-Path is empty. At
data_post a null-sender message with another number of recipients, or with a
Return-Path header field other than `<>`, fails:

  this bounce message does not have 1 recipient
      (qpsmtpd's text: `fail, this bounce message does not have 1 recipient`)
  a bounce return path must be empty (RFC 3834)

By default a failure is only logged (qpsmtpd's legacy default).

Arguments:
  log | deny | denysoft  qpsmtpd's single-word form: log only (default), refuse
                         (552), refuse temporarily (452)
  action WORD            the same as a keyword
  reject 0|1|naughty     default 0 (log only)
  reject_type perm|temp|disconnect|temp_disconnect   default perm

Also loadable as `check_bogus_bounce`.
Hooks: data_post.
Example:
  bogus_bounce deny

Differences from qpsmtpd: qpsmtpd's `deny` left `reject` at 0 and so only logged;
here `deny` and `denysoft` refuse, as its manual says. The first reply keeps
qpsmtpd's words, "fail, " included.
"""

from qpsmtpd_py.api import DECLINED, LOGINFO, REJECT, REJECT_TYPE, Choice, Plugin, Positional

ACTIONS = Choice("log", "deny", "denysoft")


class BogusBounce(Plugin):
    arguments = (
        Positional("action", ACTIONS, None, "log, deny or denysoft (qpsmtpd's single word)",
                   keyword=True),
        REJECT.but(default=None),
        REJECT_TYPE.but(default=None),
    )

    def register(self, *args):
        action = self.args["action"]
        if self.args["reject"] is None:
            self.args["reject"] = "1" if action in ("deny", "denysoft") else "0"
        if self.args["reject_type"] is None:
            self.args["reject_type"] = "temp" if action == "denysoft" else "perm"

    def hook_data_post(self, transaction):
        if transaction.sender is None or not transaction.sender.is_null:
            self.log(LOGINFO, "pass, not a null sender")
            return DECLINED
        count = len(transaction.recipients)
        if count != 1:
            self.log(LOGINFO, "fail, bogus bounce to: " +
                     ",".join(r.address for r in transaction.recipients))
            return self.get_reject("fail, this bounce message does not have 1 recipient",
                                   f"{count} recipients")
        return_path = transaction.header.get("Return-Path") if transaction.header else None
        if return_path and return_path.strip() != "<>":
            self.log(LOGINFO, "fail, bounce messages must not have a Return-Path")
            return self.get_reject("a bounce return path must be empty (RFC 3834)",
                                   f"Return-Path {return_path.strip()}")
        self.log(LOGINFO, "pass, single recipient, empty Return-Path")
        return DECLINED
