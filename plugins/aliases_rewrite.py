"""aliases_rewrite - replace the recipients by their alias expansion after DATA.

Reads the transaction note expanded_recipients ({recipient as given at RCPT:
[addresses]}, filled by aliases_check) and replaces each recipient by its
addresses; recipients without an entry stay as they are. The new list has no
duplicates; each new address carries the address note `alias_of` (the original
recipient) and the original's `recipient_options`. An expansion that is not a
valid address is logged and the original recipient kept.

The rewrite happens in data_post, so the queue plugins deliver to the expanded
addresses while the client only ever saw the addresses it gave.

Hooks: data_post. Example config/plugins lines:  aliases_check / aliases_rewrite
"""

from qpsmtpd_py.api import DECLINED, LOGERROR, LOGINFO, Address, Plugin


class AliasesRewrite(Plugin):
    arguments = ()                # none but loglevel: anything else stops start-up

    def hook_data_post(self, transaction):
        expanded = transaction.notes.get("expanded_recipients") or {}
        if not expanded:
            return DECLINED
        new, seen = [], set()
        for rcpt in transaction.recipients:
            replacement = []
            for text in expanded.get(rcpt.address) or []:
                address = Address.parse(f"<{text}>")
                if address is None or address.is_null or address.host is None:
                    self.log(LOGERROR, f"alias expansion '{text}' of {rcpt.address} is not an "
                             "address; keeping the recipient")
                    replacement = [rcpt]
                    break
                address.notes["alias_of"] = rcpt.address
                if "recipient_options" in rcpt.notes:
                    address.notes["recipient_options"] = rcpt.notes["recipient_options"]
                replacement.append(address)
            for address in replacement or [rcpt]:
                key = address.address.lower()
                if key not in seen:
                    seen.add(key)
                    new.append(address)
        old = ", ".join(r.address for r in transaction.recipients)
        transaction.recipients = new
        self.log(LOGINFO, f"recipients {old} -> {', '.join(r.address for r in new)}")
        return DECLINED
