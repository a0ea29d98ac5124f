"""hashcash - put a hashcash stamp on outgoing mail, and check the stamps of
incoming mail.

A hashcash stamp (version 1: `1:BITS:YYMMDD:RESOURCE::RAND:COUNTER`) is a proof of
work: its SHA-1 hash starts with BITS zero bits, which costs the sender about 2^BITS
hash computations and the receiver one. It is bound to one recipient (RESOURCE) and
one day.

  * Mail from relay clients (authenticated users, relayclients): one
    `X-Hashcash:` field per recipient is minted and added (at most max_recipients;
    20 bits take a second or so each).
  * Other mail: every `X-Hashcash:` / `Hashcash:` field is checked: version 1, at
    least min_bits zero bits, a resource that is one of the recipients, a date no
    more than `expiry` days old (or 2 days ahead), and not seen before (stamps are
    remembered in the shared store until they expire, so a copied stamp is spent).
    A valid stamp earns karma +1 and is listed in the transaction note `hashcash`
    ({'valid': ['u@example.test'], 'bits': 20}); invalid ones are logged. No
    message is refused.

Arguments:
  bits N            zero bits of minted stamps; default 20
  min_bits N        zero bits an incoming stamp needs; default the same as bits
  expiry DAYS       how long a stamp is valid; default 28
  mint 0|1          stamp outgoing mail; default 1
  verify 0|1        check incoming mail; default 1
  max_recipients N  stamp at most this many recipients of a message; default 20
Hooks: data_post.
Example:
  hashcash bits 20 expiry 14
"""

import base64
import datetime
import hashlib
import os

from qpsmtpd_py.api import DECLINED, LOGINFO, Bool, Int, Keyword, Plugin, StoreError

FUTURE_SLACK = 2 * 86400


def leading_zero_bits(digest):
    bits = 0
    for byte in digest:
        if byte == 0:
            bits += 8
            continue
        return bits + 8 - byte.bit_length()
    return bits


def mint(resource, bits, when, keepalive=None):
    """A version 1 stamp for `resource` with `bits` zero bits, dated `when` (UTC)."""
    rand = base64.b64encode(os.urandom(9)).decode()
    prefix = f"1:{bits}:{when:%y%m%d}:{resource}::{rand}:".encode()
    base = hashlib.sha1(prefix)
    counter = 0
    while True:
        attempt = base.copy()
        text = format(counter, "x").encode()
        attempt.update(text)
        if leading_zero_bits(attempt.digest()) >= bits:
            return (prefix + text).decode()
        counter += 1
        if keepalive is not None and not counter & 0xFFFF:
            keepalive()


def stamp_date(text):
    for fmt, size in (("%y%m%d%H%M%S", 12), ("%y%m%d%H%M", 10), ("%y%m%d", 6)):
        if len(text) == size:
            return datetime.datetime.strptime(text, fmt).replace(tzinfo=datetime.timezone.utc)
    raise ValueError(f"bad date {text}")


def check(stamp, recipients, min_bits, expiry_days, now):
    """None when the stamp is valid for one of `recipients`, else why not."""
    parts = stamp.strip().split(":")
    if len(parts) != 7 or parts[0] != "1":
        return "not a version 1 stamp"
    try:
        claimed = int(parts[1])
        stamped = stamp_date(parts[2]).timestamp()
    except ValueError as exc:
        return str(exc)
    if parts[3].lower() not in recipients:
        return f"resource {parts[3]} is not a recipient"
    if stamped < now - expiry_days * 86400 or stamped > now + FUTURE_SLACK:
        return "expired or dated in the future"
    zeros = leading_zero_bits(hashlib.sha1(stamp.strip().encode()).digest())
    if zeros < max(claimed, min_bits):
        return f"only {zeros} zero bits"
    return None


class Hashcash(Plugin):
    arguments = (
        Keyword("bits", Int(min=1, max=40), 20, "zero bits of minted stamps"),
        Keyword("min_bits", Int(min=1, max=40), None, "zero bits an incoming stamp needs"),
        Keyword("expiry", Int(min=1), 28, "days a stamp is valid"),
        Keyword("mint", Bool(), True, "stamp outgoing mail"),
        Keyword("verify", Bool(), True, "check incoming mail"),
        Keyword("max_recipients", Int(min=1), 20, "recipients stamped per message"),
    )

    def register(self, *args):
        self.min_bits = self.args["min_bits"] or self.args["bits"]
        self.spent = self.store.table("hashcash")

    def hook_data_post(self, transaction):
        if self.connection.relay_client:
            if self.args["mint"]:
                self.stamp(transaction)
            return DECLINED
        if self.args["verify"]:
            self.verify(transaction)
        return DECLINED

    def stamp(self, transaction):
        when = datetime.datetime.fromtimestamp(self.app.clock.time(), datetime.timezone.utc)
        recipients = transaction.recipients[:self.args["max_recipients"]]
        for rcpt in recipients:
            stamp = mint(rcpt.address.lower(), self.args["bits"], when, self.keepalive)
            transaction.header.add("X-Hashcash", stamp, prepend=True)
        self.log(LOGINFO, f"pass, minted {len(recipients)} stamp(s) of {self.args['bits']} bits")

    def verify(self, transaction):
        recipients = {r.address.lower() for r in transaction.recipients}
        now = self.app.clock.time()
        valid = []
        stamps = transaction.header.get_all("X-Hashcash") + transaction.header.get_all("Hashcash")
        for stamp in stamps:
            stamp = "".join(str(stamp).split())
            problem = check(stamp, recipients, self.min_bits, self.args["expiry"], now)
            if problem is None:
                try:
                    if self.spent.incr(stamp, ttl=self.args["expiry"] * 86400 + FUTURE_SLACK) > 1:
                        problem = "spent before (double spending)"
                except StoreError as exc:
                    problem = f"cannot check double spending: {exc}"
            if problem:
                self.log(LOGINFO, f"fail, stamp {stamp[:60]}: {problem}")
                continue
            valid.append(stamp.split(":")[3].lower())
        if valid:
            transaction.notes["hashcash"] = {"valid": valid, "bits": self.min_bits}
            self.adjust_karma(1)
            self.log(LOGINFO, f"pass, valid stamp(s) for {', '.join(valid)}")
        elif stamps:
            self.log(LOGINFO, "fail, no valid stamp")
