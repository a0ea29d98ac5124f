"""check_verybadrcptto - one listed recipient spoils the whole transaction.

config/verybadrcptto has the format of badrcptto (user@host, @host, patterns,
optional reason; see `badrcptto`). Where badrcptto refuses only the listed
recipient, a recipient in verybadrcptto (a spam-trap address nobody legitimate
writes to) marks the transaction as spam:

  * the listed RCPT itself:  550 mail to trap@example.com not accepted here (#5.1.1)
    (or `550 <reason>` when the line has one)
  * every later RCPT of the same transaction, valid or not:
      550 Transaction refused: it was addressed to a forbidden recipient
  * DATA, which would deliver to the recipients accepted before the listed one:
      554 Transaction refused: it was addressed to a forbidden recipient
    (DATA resets the transaction, as any refused DATA does)
A new MAIL or RSET starts a clean transaction. The state is the transaction note
`verybadrcptto` (the listed address).

It applies to every client, relay clients included. A hit costs two karma points.

Arguments:
  reject_type perm|disconnect   disconnect: answer the listed RCPT with 550 and
                                close the connection (default perm)

Hooks: rcpt, data. Load it before rcpt_ok.
Example config/plugins line:  check_verybadrcptto reject_type disconnect
"""

from qpsmtpd_py.api import DECLINED, DENY, LOGINFO, REJECT_TYPE, isa_plugin

REFUSED = "Transaction refused: it was addressed to a forbidden recipient"


class CheckVeryBadRcptTo(isa_plugin("badrcptto")):
    list_name = "verybadrcptto"
    arguments = (REJECT_TYPE.but(help="disconnect: answer the listed RCPT with 550 and close "
                                 "the connection (default perm)"),)

    def hook_rcpt(self, transaction, rcpt, params=None):
        poisoned = transaction.notes.get("verybadrcptto")
        if poisoned:
            self.log(LOGINFO, f"fail, transaction already addressed to {poisoned}")
            return DENY, REFUSED
        entry = self.find(rcpt)
        if entry is None:
            return DECLINED
        transaction.notes["verybadrcptto"] = rcpt.address
        self.adjust_karma(-2)
        self.log(LOGINFO, f"fail, {rcpt.address} matches {entry.token} ({entry.line.origin}); "
                 "refusing the whole transaction")
        _code, text = self.refusal(rcpt, entry)
        return self.get_reject_type(DENY), text

    def hook_data(self, transaction):
        poisoned = transaction.notes.get("verybadrcptto")
        if poisoned:
            self.log(LOGINFO, f"fail, DATA refused: transaction was addressed to {poisoned}")
            return DENY, REFUSED
        return DECLINED
