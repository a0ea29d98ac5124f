"""badmailfrom - refuse mail from the envelope senders listed in config/badmailfrom.

Like qmail-smtpd: "qmail-smtpd will reject every recipient address for a message
if the envelope sender address is listed in badmailfrom". The sender is checked
at MAIL and noted; the MAIL command itself is accepted (250), and every RCPT that
follows is refused with the line's reason:

  550 sorry, your envelope sender is in my badmailfrom list

Config file badmailfrom, one entry a line:  PATTERN [reason ...]
  user@example.com             that sender (case does not matter)
  @spam.example                every sender in that domain
  ^bounce-.*@lists\\.example$   a regular expression: as in qpsmtpd, a pattern containing
                               one of / ^ $ * + ! % ? \\ (or written /re/), searched in
                               the lower-cased user@host
  !                            (such as qpsmtpd's sample lines) every sender with a
  %                            bang path, with a percent hack
  !/@example\\.com$/            a negated regular expression: every sender that
                               does NOT match (a leading ! alone is a literal bang)
A pattern written as an address also matches that address: spam+list@example.com
refuses spam+list@ (and, as in qpsmtpd, spamlist@, spammlist@ ...). Lines without
an @ that are not patterns, and bad regular expressions, are logged with file and
line and skipped. (Shared syntax: qpsmtpd_py/helpers/addrlist.py.)

The null sender <> and senders without user or host are never checked; relay
clients and whitelisted hosts/senders (is_immune) are skipped. A listed sender
costs one karma point.

Arguments:
  reject 1|0|naughty   1 (default): refuse at RCPT; 0: only log; naughty: leave the
                       rejection to the naughty plugin
  reject_type perm|temp|disconnect|temp_disconnect   (default perm: 550)

Hooks: mail (match and note badmailfrom), rcpt (refuse). Load it before rcpt_ok.
Also loadable as check_badmailfrom.

Example config/badmailfrom:
  spammer@example.com
  @junk.example        we don't take mail from junk.example
Example config/plugins line:  badmailfrom reject naughty
"""

from qpsmtpd_py.api import DECLINED, LOGDEBUG, LOGINFO, REJECT, REJECT_TYPE, Plugin, address_list

DEFAULT_REASON = "sorry, your envelope sender is in my badmailfrom list"


class BadMailFrom(Plugin):
    arguments = (REJECT.but(help="1 refuses the recipients at RCPT, 0 only logs, naughty "
                            "leaves the refusal to the naughty plugin"),
                 REJECT_TYPE.but(help="perm (550, default), temp, disconnect, temp_disconnect"))

    def hook_mail(self, transaction, sender, params=None):
        if sender is None or sender.is_null or not sender.user or not sender.host:
            self.log(LOGDEBUG, "skip, null sender or no user/host")
            return DECLINED
        if self.is_immune():
            return DECLINED
        entry = address_list(self, "badmailfrom").match(sender)
        if entry is None:
            self.log(LOGINFO, "pass")
            return DECLINED
        reason = entry.text or DEFAULT_REASON
        self.adjust_karma(-1)
        detail = f"{sender.address} matches {entry.token} ({entry.line.origin})"
        if self.args["reject"] in ("0", "naughty"):
            return self.get_reject(reason, detail)      # logs 'tolerated' or notes naughty
        self.log(LOGINFO, f"fail, {detail}; refusing its recipients")
        transaction.notes["badmailfrom"] = reason
        return DECLINED

    def hook_rcpt(self, transaction, rcpt, params=None):
        reason = transaction.notes.get("badmailfrom")
        if not reason:
            return DECLINED
        return self.get_reject(reason, "sender in badmailfrom")
