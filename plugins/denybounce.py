"""denybounce - refuse bounces to local addresses that never send mail.

No-reply senders, newsletter senders and the like receive only backscatter:
bounces of spam that forged them as the sender. For a bounce (the null sender
<>), a recipient listed in config/denybounce is refused

  550 Sorry, noreply@example.com sends no mail, so it accepts no bounces

Config file denybounce, one entry a line:  PATTERN [reply text ...]
  noreply@example.com          that address
  @newsletter.example.com      every address in that domain
  no-reply                     that local part in any domain
  ^bounce-.*@example\\.com$     a regular expression (contains one of / ^ $ * + ! % ? \\,
                               or /re/), searched in the lower-cased user@host
A line with text after the pattern answers `550 <text>`. Case does not matter; bad
regular expressions are logged with file and line and skipped (syntax shared
with badrcptto: qpsmtpd_py/helpers/addrlist.py).

Mail with a real sender is never affected. Hooks: rcpt. Load it before rcpt_ok.
Example config/plugins line:  denybounce
"""

from qpsmtpd_py.api import DECLINED, DENY, LOGINFO, Plugin, address_list


class DenyBounce(Plugin):
    arguments = ()                # none but loglevel: anything else stops start-up

    def hook_rcpt(self, transaction, rcpt, params=None):
        sender = transaction.sender
        if sender is None or not sender.is_null or not rcpt.user:
            return DECLINED
        entry = address_list(self, "denybounce", bare_user=True).match(rcpt)
        if entry is None:
            return DECLINED
        self.log(LOGINFO, f"fail, bounce to {rcpt.address} ({entry.token}, {entry.line.origin})")
        return DENY, entry.text or f"Sorry, {rcpt.address} sends no mail, so it accepts no bounces"
