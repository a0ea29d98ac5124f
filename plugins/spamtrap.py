"""spamtrap - accept mail to trap addresses and deliver it somewhere else.

A spam trap is an address no person uses (published only where harvesters find
it): whatever arrives there is spam. The trap recipient is accepted like a real
one, so the sender learns nothing, and after DATA the message is delivered to the
trap's destination (a spam archive, a filter-training mailbox) instead of the
trap address.

Config file spamtrap, one trap a line:  PATTERN [DESTINATION]
  trap@example.com                  spam-archive@example.com
  @honeypot.example.com             spam-archive@example.com
  ^old-[0-9]+@example\\.com$
PATTERN is an address, @domain, bare local part or regular expression (syntax of
the badrcptto family, qpsmtpd_py/helpers/addrlist.py; bad lines are logged with file and
line and skipped). DESTINATION is the address the copy goes to; without it the
`deliver_to` argument is used, and without that the message stays with the trap
address itself (it is still marked).

At RCPT a trap recipient is accepted at once (OK: later rcpt plugins, rcpt_ok
included, do not run for it) and
  * the transaction note spamtrap lists the trap addresses hit,
  * the connection note spamtrap counts the hits, and the client loses one karma
    point per hit (for karma/naughty).
After DATA (data_post) every trap recipient is replaced by its destination
(duplicates removed), and the header `X-Spamtrap: <trap address>` is added for each
trap hit. Other recipients of the same message are delivered normally.

Arguments:
  deliver_to ADDRESS   the default destination (e.g. spam-archive@example.com)

Hooks: rcpt, data_post. Load it before the other recipient checks.
Example config/plugins line:  spamtrap deliver_to spam-archive@example.com
"""

from qpsmtpd_py.api import DECLINED, LOGINFO, OK, Address, Checked, Keyword, Plugin, address_list


def _destination(text):
    if not text:
        return None
    word = text.split()[0]
    address = Address.parse(word if word.startswith("<") else f"<{word}>")
    if address is None or address.is_null or not address.host:
        raise ValueError(f"destination '{word}' is not an address")
    return address.address


class Spamtrap(Plugin):
    arguments = (
        Keyword("deliver_to", Checked(_destination, "an address", "ADDRESS"), None,
                "the default destination of trapped mail"),
    )

    def register(self, *args):
        self.deliver_to = self.args["deliver_to"]

    def hook_rcpt(self, transaction, rcpt, params=None):
        if not rcpt.user:
            return DECLINED
        entry = address_list(self, "spamtrap", bare_user=True, parse=_destination).match(rcpt)
        if entry is None:
            return DECLINED
        destination = entry.data or self.deliver_to
        rcpt.notes["spamtrap"] = destination or rcpt.address
        transaction.notes.setdefault("spamtrap", []).append(rcpt.address)
        notes = self.connection.notes
        notes["spamtrap"] = (notes.get("spamtrap") or 0) + 1
        self.adjust_karma(-1)
        self.log(LOGINFO, f"trap hit: {rcpt.address} ({entry.line.origin}), "
                 f"delivering to {destination or 'the trap itself'}")
        return OK

    def hook_data_post(self, transaction):
        traps = transaction.notes.get("spamtrap")
        if not traps:
            return DECLINED
        for trap in traps:
            transaction.header.add("X-Spamtrap", trap, prepend=True)
        new, seen = [], set()
        for rcpt in transaction.recipients:
            target = rcpt
            if rcpt.notes.get("spamtrap") and rcpt.notes["spamtrap"] != rcpt.address:
                target = Address.parse(f"<{rcpt.notes['spamtrap']}>")
                target.notes["spamtrap_of"] = rcpt.address
            if target.address.lower() not in seen:
                seen.add(target.address.lower())
                new.append(target)
        transaction.recipients = new
        return DECLINED
