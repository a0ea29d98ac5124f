"""bounce_rcpt_regexp - rcpt_regexp rules that apply to bounces only.

A bounce is a transaction whose envelope sender is the null sender <> or a
MAILER-DAEMON address (any case, any domain); it is marked with the transaction
note `bounce` at MAIL. For bounces, each recipient is looked up in
config/bounce_rcpt_regexp exactly as rcpt_regexp does (see `rcpt_regexp`):

  PATTERN RETCODE [comment ...]     e.g.
  /^noreply@/            DENY   This address sends no mail, so it takes no bounces
  newsletter@example.com DENY   Bounces for the newsletter go to its list server

The first matching line answers; no match (and every recipient of a mail that is
not a bounce) is DECLINED. Bad lines are logged with file and line and skipped.

Hooks: mail, rcpt. Load it before rcpt_ok.
Example config/plugins line:  bounce_rcpt_regexp
"""

from qpsmtpd_py.api import DECLINED, LOGDEBUG, isa_plugin


class BounceRcptRegexp(isa_plugin("rcpt_regexp")):
    config_name = "bounce_rcpt_regexp"

    def hook_mail(self, transaction, sender, params=None):
        if sender.is_null or (sender.user or "").lower() == "mailer-daemon":
            transaction.notes["bounce"] = True
            self.log(LOGDEBUG, f"{sender} is a bounce")
        return DECLINED

    def hook_rcpt(self, transaction, rcpt, params=None):
        if not transaction.notes.get("bounce"):
            return DECLINED
        return super().hook_rcpt(transaction, rcpt, params)
