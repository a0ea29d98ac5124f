"""dkim - verify the DKIM signatures of incoming mail and sign outgoing mail (RFC 6376).

Verifying (every client that is not a relay client or an authenticated user): each
DKIM-Signature of the message is checked, and each gets its own `dkim=` entry in the
message's Authentication-Results, e.g.
`dkim=pass (1024-bit key) header.d=example.org header.i=@example.org header.s=may2013`.
Results: pass; fail (the signature or the body hash does not match: the message was
changed, or the signature is forged); permerror (a malformed signature, no key, a
malformed, revoked or too small key); temperror (the key could not be looked up:
DNS failure or time-out); none (no signature). Keys are looked up through the
server's resolver (config `dns_servers`, `dns_timeout`).

The message's result is pass when any signature passes, else temperror, fail,
permerror in that order. At the end of DATA (data_post):
  fail       -> the `reject` policy: 552 `signature invalid: <reason>` (karma -1)
  temperror  -> 452 `Please try again later - <reason>` (unless `reject 0`)
  others     -> accepted
`reject 0` only records; `reject naughty` leaves the refusal to the naughty plugin.

Signing (relay clients and authenticated users): the message is signed for the
domain of its From header (else the envelope sender's domain) with the key in the
config directory, laid out as qpsmtpd does:

  config/dkim/example.org/selector   the selector in use (first line), e.g. may2013
  config/dkim/example.org/private    the private key (PEM, RSA; 1024 bits or more)
  config/dkim/example.org/may2013.private   optional: a key per selector (below)

`openssl genrsa -out private 2048` makes a key; publish the public half as
`may2013._domainkey.example.org TXT "v=DKIM1; k=rsa; p=<base64 of the DER public key>"`.
No directory for a.b.example.org: the closest parent domain's is used (d= that parent).
A symbolic link (config/dkim/client.example -> example.org) signs with the target's
key and d=example.org. Key rotation: put the new key beside the old one as
`<new selector>.private`, publish its DNS record, then write the new selector into
`selector`: the next message is signed with the new key (no restart); remove the old
key and its DNS record once mail signed with it has been delivered. Signatures are
rsa-sha256, relaxed/relaxed, over the From, To, Subject, Date, Message-ID, MIME and
list headers present; they are added as the last step before queueing (queue_pre),
after every plugin that changes the message. A key that cannot be read is logged
(`error, ...`) and the message goes out unsigned.

Arguments:
  reject 0|1|naughty     default 1
  reject_type perm|temp|disconnect|temp_disconnect   default perm

Notes: transaction `dkim_signatures` (a list of {result, domain, selector, identity,
reason, keysize}; dmarc reads it), `dkim_result` (the message's result), `dkim_reject`;
connection `dkim_result` and `dkim_pass_domains` (as qpsmtpd).
Hooks: data_post_headers (verify), data_post (refuse), queue_pre (sign).

Example:  dkim reject 0

Differences from qpsmtpd: every signature is verified and reported (qpsmtpd reported
the first); refusals happen in data_post, where they take effect (qpsmtpd answered in
data_post_headers, where answers are ignored); ADSP and DomainKeys policies (obsolete)
are not consulted; mail is signed for the From domain, last before queueing; a
closest-parent key is used (qpsmtpd took the farthest); keys per selector for rotation;
DomainKey-Signature fields (Mail::DKIM checked those too) are left to the domainkeys plugin.
Needs the extra `dkim` (dkimpy, authres).
"""

import logging
from email.utils import getaddresses

from qpsmtpd_py.api import (
    DECLINED, DENYSOFT, DNSFailure, LOGDEBUG, LOGERROR, LOGINFO, REJECT, REJECT_TYPE, Plugin,
    dkim_speed_up, key_to_sign_with, message_bytes, printable, require_extra, set_auth_result,
)

dkim = dkim_speed_up(require_extra("dkim", "dkimpy", "dkim", "python3-dkim", "dkim"))
authres = require_extra("authres", "authres", "dkim", "python3-authres", "dkim")

_QUIET = logging.getLogger("qpsmtpd_py.dkim")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False

ORDER = ("pass", "temperror", "fail", "permerror")


def from_domain(transaction):
    """The domain of the From header's (first) address, or None."""
    value = transaction.header.get("From") or ""
    for _name, addr in getaddresses([value]):
        if "@" in addr:
            return addr.rsplit("@", 1)[1].strip().strip(">").lower() or None
    return None


class Dkim(Plugin):
    arguments = (REJECT, REJECT_TYPE.but(default="perm"))

    # -- verifying -----------------------------------------------------------------------------
    def hook_data_post_headers(self, transaction):
        if self.connection.relay_client:
            return DECLINED                   # our own user's mail: signed at queue_pre
        if self.is_immune():
            return DECLINED
        signatures = self.verify(message_bytes(transaction))
        result = overall(signatures)
        transaction.notes["dkim_signatures"] = signatures
        transaction.notes["dkim_result"] = result
        self.connection.notes["dkim_result"] = result
        passed = sorted({s["domain"] for s in signatures if s["result"] == "pass"})
        self.connection.notes["dkim_pass_domains"] = passed
        set_auth_result(transaction.notes, "dkim", *([ar_entry(s) for s in signatures]
                                                    or [authres.DKIMAuthenticationResult(result="none")]))
        detail = "; ".join(f"{s['result']} d={s['domain']} s={s['selector']}"
                           + (f" ({s['reason']})" if s["reason"] else "") for s in signatures)
        if result == "pass":
            self.adjust_karma(1)
            self.log(LOGINFO, f"pass, {detail}")
        elif result == "none":
            self.log(LOGINFO, "skip, no DKIM signature")
        else:
            first = next(s for s in signatures if s["result"] == result)
            transaction.notes["dkim_reject"] = (result, first["reason"] or result)
            self.log(LOGINFO, f"{'error' if result == 'temperror' else 'fail'}, {detail}")
        return DECLINED

    def verify(self, message):
        """[{result, domain, selector, identity, reason, keysize}] for every signature."""
        try:
            checker = dkim.DKIM(message, logger=_QUIET)
        except dkim.DKIMException as exc:
            return [sig_result("permerror", reason=f"unparseable message: {exc}")]
        count = sum(1 for name, _ in checker.headers if name.lower() == b"dkim-signature")
        return [self.verify_one(checker, index) for index in range(count)]

    def verify_one(self, checker, index):
        """One signature, on the message parsed once (each verify_sig call keeps its
        own state)."""
        try:
            prep = checker.verify_headerprep(index)
        except dkim.DKIMException as exc:
            return sig_result("permerror", reason=f"malformed signature: {exc}")
        sig, include_headers, sigheaders = prep
        info = {key: printable(sig.get(tag, b"").decode("ascii", "replace"))
                for key, tag in (("domain", b"d"), ("selector", b"s"), ("identity", b"i"))}
        name = f"{info['selector']}._domainkey.{info['domain']}"
        try:
            records = self.resolver.query(name, "TXT")
        except DNSFailure as exc:
            return sig_result("temperror", reason=f"key lookup failed: {exc}", **info)
        keys = [r for r in records if "p=" in r]
        if len(keys) != 1:
            return sig_result("permerror", reason="no key" if not keys else "more than one key", **info)
        record = keys[0].encode("utf-8")
        try:
            tags = dkim.util.parse_tag_value(record)
        except dkim.util.InvalidTagValueList as exc:
            return sig_result("permerror", reason=f"bad key record: {printable(exc, 80)}", **info)
        if not tags.get(b"p", b"x").strip():
            return sig_result("permerror", reason="key revoked", **info)
        try:
            _pk, keysize, _ktag, _tls = dkim.evaluate_pk(name.encode(), record)
        except (dkim.DKIMException, ValueError) as exc:
            return sig_result("permerror", reason=f"bad key: {printable(exc, 80)}", **info)
        try:
            ok = checker.verify_sig(sig, include_headers, sigheaders[index],
                                    dnsfunc=lambda _name, timeout=5: record)
        except dkim.ValidationError as exc:
            reason = "body hash did not verify" if "body hash" in str(exc) else printable(exc, 80)
            return sig_result("fail" if "body hash" in str(exc) else "permerror", reason=reason,
                              keysize=keysize, **info)
        except dkim.DKIMException as exc:
            return sig_result("permerror", reason=printable(exc, 80), keysize=keysize, **info)
        if ok:
            return sig_result("pass", keysize=keysize, **info)
        return sig_result("fail", reason="signature did not verify", keysize=keysize, **info)

    def hook_data_post(self, transaction):
        refusal = transaction.notes.get("dkim_reject")
        if not refusal:
            return DECLINED
        result, reason = refusal
        if result == "fail":
            self.adjust_karma(-1)
            return self.get_reject(f"signature invalid: {reason}", f"DKIM {result}")
        if result == "temperror" and str(self.args["reject"]) != "0":
            self.log(LOGINFO, f"error, {reason}")
            return DENYSOFT, f"Please try again later - {reason}"
        return DECLINED

    # -- signing -------------------------------------------------------------------------------
    def hook_queue_pre(self, transaction):
        if not self.connection.relay_client:
            return DECLINED
        domain = from_domain(transaction) or (transaction.sender.host or "").lower()
        key = key_to_sign_with(self, domain, self.app.config.dirs,
                               missing="skip, DKIM not configured for")
        if key is None:
            return DECLINED
        try:
            line = dkim.sign(message_bytes(transaction), key.selector.encode(), key.domain.encode(),
                             key.private_key(), canonicalize=(b"relaxed", b"relaxed"),
                             logger=_QUIET)
        except (OSError, dkim.DKIMException) as exc:
            self.log(LOGERROR, f"error, signing for {domain} with {key.key_path}: {exc}; not signed")
            return DECLINED
        value = line.decode("ascii").split(":", 1)[1].strip().replace("\r\n", "\n")
        transaction.header.add("DKIM-Signature", value, prepend=True)
        self.log(LOGINFO, f"pass, signed with d={key.domain} s={key.selector}")
        self.log(LOGDEBUG, f"key {key.key_path}")
        return DECLINED


def sig_result(result, reason="", domain="", selector="", identity="", keysize=None):
    return {"result": result, "reason": reason, "domain": domain.lower(), "selector": selector,
            "identity": identity, "keysize": keysize}


def overall(signatures):
    for result in ORDER:
        if any(s["result"] == result for s in signatures):
            return result
    return "none"


def ar_entry(sig):
    """One `dkim=` entry: the key size as a comment, the reason as reason="..."."""
    comment = f"{sig['keysize']}-bit key" if sig["keysize"] else None
    reason = None
    if sig["reason"] and sig["result"] != "pass":
        reason = sig["reason"].replace('"', "'").replace("\\", "/")
    fields = {k: v for k, v in (("header_d", sig["domain"]), ("header_s", sig["selector"]),
                                 ("header_i", sig["identity"] or (f"@{sig['domain']}" if sig["domain"] else "")))
              if v}
    return authres.DKIMAuthenticationResult(result=sig["result"], result_comment=comment,
                                            reason=reason, **fields)
