"""badmailfromto - refuse one sender's mail to particular recipients, as if the
recipient did not exist.

For harassment cases: the listed sender may still write to everyone else, and
is not told that it is blocked; mail to the listed recipient is refused with the
words of an unknown-user bounce:

  550 mail to victim@example.com not accepted here

Config file badmailfromto, one pair a line:  FROM<TAB>TO
  FROM   the sender: user@host, @host (every sender there) or a pattern
  TO     the recipient: user@host, @host or a pattern
The separator is a TAB as in qpsmtpd (any white space is accepted). Patterns and
case rules are those of badmailfrom (qpsmtpd_py/helpers/addrlist.py). Lines with one field,
bad patterns or addresses without @ are logged with file and line and skipped.

The null sender and senders without user or host are never checked.

Hooks: mail (note the matching lines in the transaction note badmailfromto), rcpt.
Load it before rcpt_ok. Also loadable as check_badmailfromto.

Example config/badmailfromto:
  stalker@example.net	alice@example.com
  @harass.example	bob@example.com
"""

from qpsmtpd_py.api import DECLINED, DENY, LOGDEBUG, LOGINFO, Plugin, address_list, compile_pattern


def _recipient_pattern(text):
    fields = text.split()
    if not fields:
        raise ValueError("no recipient after the sender (FROM<TAB>TO)")
    return compile_pattern(fields[0])


class BadMailFromTo(Plugin):
    arguments = ()                # none but loglevel: anything else stops start-up

    def pairs(self):
        return address_list(self, "badmailfromto", parse=_recipient_pattern)

    def hook_mail(self, transaction, sender, params=None):
        if sender is None or sender.is_null or not sender.user or not sender.host:
            self.log(LOGDEBUG, "skip, null sender or no user/host")
            return DECLINED
        matches = self.pairs().match_all(sender)
        if matches:
            transaction.notes["badmailfromto"] = [e.data for e in matches]
            self.log(LOGINFO, f"sender {sender.address} listed ({len(matches)} recipients)")
        return DECLINED

    def hook_rcpt(self, transaction, rcpt, params=None):
        blocked = transaction.notes.get("badmailfromto")
        if not blocked or not rcpt.host:
            return DECLINED
        for pattern in blocked:
            if pattern.matches(rcpt.user, rcpt.host):
                address = f"{rcpt.user}@{rcpt.host}".lower()
                self.log(LOGINFO, f"fail, {transaction.sender.address} to {address} is listed")
                return DENY, f"mail to {address} not accepted here"
        self.log(LOGDEBUG, "pass, recipient not listed")
        return DECLINED
