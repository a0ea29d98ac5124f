"""badrcptto - refuse the recipients listed in config/badrcptto.

Like badmailfrom, for the recipient address. Only the listed recipient is
refused; the others of the transaction go on:

  550 mail to bad@example.com not accepted here (#5.1.1)

The address in the reply is the list entry (user@host or @host) as in qpsmtpd,
or the recipient itself when a regular expression matched. A line with a reason
is answered `550 <reason>` instead.

Config file badrcptto, one entry a line:  PATTERN [reason ...]
  closed@example.com       that recipient (case does not matter)
  @old.example.com         every recipient in that domain
  ^(root|daemon)@          a regular expression: as in qpsmtpd, a pattern containing one
                           of / ^ $ * + ! % ? \\ (or written /re/), searched in the
                           lower-cased user@host
  !   Sorry, bang paths not accepted here      qpsmtpd's sample lines: a bang path,
  %   Sorry, percent hack not accepted here    a percent hack
  !/@example\\.com$/        negated: every recipient that does NOT match (a leading !
                           alone is a literal bang, as in qpsmtpd)
A pattern written as an address also matches that address (closed+tag@example.com;
qpsmtpd matched only closedtag@, closeddtag@ ...). Lines without @ that are not
patterns, and bad regular expressions, are logged with file and line and skipped
(syntax shared with badmailfrom: qpsmtpd_py/helpers/addrlist.py).

A closed mailbox is refused for everybody, relay clients and whitelisted hosts
included (qpsmtpd #223). Recipients without a host (<postmaster>) are not
checked. A listed recipient costs two karma points.

Hooks: rcpt. Load it before rcpt_ok. Also loadable as check_badrcptto.
Example config/plugins line:  badrcptto
"""

from qpsmtpd_py.api import DECLINED, DENY, LOGDEBUG, LOGINFO, Plugin, address_list


class BadRcptTo(Plugin):
    arguments = ()                # none but loglevel: anything else stops start-up
    list_name = "badrcptto"

    def find(self, rcpt):
        """The matching list entry for this recipient, or None."""
        if not rcpt.user or not rcpt.host:
            self.log(LOGDEBUG, "skip, missing user or host")
            return None
        entries = address_list(self, self.list_name)
        if not entries:
            self.log(LOGDEBUG, "skip, empty list")
            return None
        return entries.match(rcpt)

    def refusal(self, rcpt, entry):
        """(DENY, text) for a listed recipient."""
        if entry.text:
            return DENY, entry.text
        shown = entry.token.lower() if entry.pattern.kind in ("address", "domain") \
            else f"{rcpt.user}@{rcpt.host}".lower()
        return DENY, f"mail to {shown} not accepted here (#5.1.1)"

    def hook_rcpt(self, transaction, rcpt, params=None):
        entry = self.find(rcpt)
        if entry is None:
            self.log(LOGINFO, "pass")
            return DECLINED
        self.adjust_karma(-2)
        self.log(LOGINFO, f"fail, {rcpt.address} matches {entry.token} ({entry.line.origin})")
        return self.refusal(rcpt, entry)
