"""domainkeys - verify the DomainKeys signature of incoming mail (RFC 4870, historic).

DomainKeys is DKIM's predecessor; a few senders still add a `DomainKey-Signature`.
Messages without one are not looked at. For a signed message the plugin checks the
first DomainKey-Signature (rsa-sha1, `simple` or `nofws`) with the key at
`<s>._domainkey.<d>` (through the server's resolver), d= being the sending domain
(of the Sender header, else From) or a parent of it, and records the outcome as a
`domainkeys=` entry of the message's Authentication-Results, e.g.
`domainkeys=pass header.d=example.org header.from=a@example.org`:
  pass       the signature verifies (key testing mode t=y: neutral)
  fail       it does not verify
  permerror  a malformed signature, no key, a revoked or malformed key, a d= that is
             not the sending domain
  temperror  the key or policy could not be looked up (DNS failure, time-out)

A message is refused only when its signature fails (or is missing/unusable) and the
sending domain's policy (`_domainkey.<domain>` TXT) says it signs all its mail
(`o=-`) and is not testing (`t=y`): 552 `DomainKeys signature validation failed`
(reject_type temp: 452), at the end of DATA. A DNS failure never refuses and never
passes: the result is temperror, and with `reject 1` the message is deferred (452
`DomainKeys lookup failed, try again later`).

Arguments:
  reject 0|1|naughty     default 1 (0: record only)
  reject_type WORD       perm (default) or temp ...
  warn_only 1            the old spelling of reject 0
Relay clients and whitelisted senders are skipped.
Notes (transaction): `domainkeys` {result, reason, domain, selector}.
Hooks: data_post_headers (verify), data_post (refuse).
Example:  domainkeys reject 0

Differences from qpsmtpd: no Mail::DomainKeys; results go to Authentication-Results
as RFC 8601's `domainkeys` method (qpsmtpd wrote `domainkey=<status>`); the refusal
happens in data_post, where it takes effect.
"""

from email.utils import getaddresses

from qpsmtpd_py.api import (
    DECLINED, DENYSOFT, DNSFailure, LOGINFO, REJECT, REJECT_TYPE, Bool, Keyword, Plugin,
    domainkeys, message_bytes, printable, require_extra, set_auth_result,
)

authres = require_extra("authres", "authres", "dkim", "python3-authres", "domainkeys")
require_extra("cryptography", "cryptography", "dkim", "python3-cryptography", "domainkeys")


def sending_address(transaction):
    for name in ("Sender", "From"):
        for _display, addr in getaddresses(transaction.header.get_all(name) or []):
            if "@" in addr:
                return addr.lower()
    return None


class Domainkeys(Plugin):
    arguments = (REJECT, REJECT_TYPE.but(default="perm"),
                 Keyword("warn_only", Bool(), False, "old spelling of reject 0"))

    def register(self, *args):
        if self.args["warn_only"]:
            self.args["reject"] = "0"

    def hook_data_post_headers(self, transaction):
        if self.is_immune() or not transaction.header.get("DomainKey-Signature"):
            if not transaction.header.get("DomainKey-Signature"):
                self.log(LOGINFO, "skip, unsigned")
            return DECLINED
        result, reason, tags, sender = self.check(transaction)
        domain = tags.get("d", "").lower()
        transaction.notes["domainkeys"] = {"result": result, "reason": reason, "domain": domain,
                                           "selector": tags.get("s", "")}
        props = {k: v for k, v in (("header_d", domain), ("header_from", sender)) if v}
        entry = authres.AuthenticationResult(
            method="domainkeys", result=result,
            reason=reason.replace('"', "'").replace("\\", "/") if reason else None,
            properties=[authres.AuthenticationResultProperty(k.split("_")[0], k.split("_")[1], v)
                        for k, v in props.items()])
        set_auth_result(transaction.notes, "domainkeys", entry)
        self.log(LOGINFO, f"{'pass' if result in ('pass', 'neutral') else 'fail'}, {result}"
                          + (f" ({reason})" if reason else "") + (f" d={domain}" if domain else ""))
        if result in ("pass", "neutral") or str(self.args["reject"]) == "0":
            return DECLINED
        if result == "temperror":
            transaction.notes["domainkeys_reject"] = "temperror"
        elif sender and self.signs_all(sender.rsplit("@", 1)[1]):
            transaction.notes["domainkeys_reject"] = "policy"
        return DECLINED

    def check(self, transaction):
        """(result, reason, signature tags, sending address)."""
        sender = sending_address(transaction)
        message = message_bytes(transaction)
        fields, _body = domainkeys.split_message(message)
        index = next(i for i, f in enumerate(fields) if f[0].lower() == b"domainkey-signature")
        text = fields[index][1].split(b":", 1)[1].decode("utf-8", "replace")
        tags = domainkeys.parse_tags(text)
        if tags.get("a", "rsa-sha1").lower() != "rsa-sha1" or not tags.get("d") or not tags.get("s") \
                or not tags.get("b"):
            return "permerror", "malformed signature", tags, sender
        domain = tags["d"].lower()
        if not sender:
            return "permerror", "no sending address", tags, sender
        sender_domain = sender.rsplit("@", 1)[1]
        if sender_domain != domain and not sender_domain.endswith("." + domain):
            return "permerror", f"d={printable(domain)} is not the sending domain", tags, sender
        try:
            records = self.resolver.query(f"{tags['s']}._domainkey.{domain}", "TXT")
        except DNSFailure as exc:
            return "temperror", f"key lookup failed: {exc}", tags, sender
        keys = [r for r in records if "p=" in r]
        if len(keys) != 1:
            return "permerror", "no key" if not keys else "more than one key", tags, sender
        try:
            key, key_tags = domainkeys.public_key(keys[0])
            ok = domainkeys.verify(message, tags, index, key)
        except domainkeys.DomainKeysError as exc:
            return "permerror", printable(exc, 80), tags, sender
        if ok:
            return ("neutral", "key in testing mode", tags, sender) if key_tags.get("t") == "y" \
                else ("pass", "", tags, sender)
        return "fail", "signature did not verify", tags, sender

    def signs_all(self, domain):
        """The domain's policy says every message is signed (o=-) and it is not testing."""
        try:
            records = self.resolver.query(f"_domainkey.{domain}", "TXT")
        except DNSFailure:
            return False
        for record in records:
            tags = domainkeys.parse_tags(record)
            if tags.get("t") == "y":
                return False
            if tags.get("o") == "-":
                return True
        return False

    def hook_data_post(self, transaction):
        why = transaction.notes.get("domainkeys_reject")
        if why == "temperror":
            return DENYSOFT, "DomainKeys lookup failed, try again later"
        if why:
            return self.get_reject("DomainKeys signature validation failed", "DomainKeys policy o=-")
        return DECLINED
