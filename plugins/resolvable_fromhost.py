"""resolvable_fromhost - refuse envelope senders whose domain cannot receive mail.

A bounce to the sender of a message must be deliverable, so the domain of MAIL
FROM:<user@domain> must have a usable mail exchanger: an MX record whose host has
an address, or no MX and an A or AAAA record of its own (RFC 5321 5.1). Forged
senders with made-up domains fail this cheaply.

The checks, in order (the MX, A and AAAA lookups of the domain start together;
the addresses of all MX hosts are then asked at once):
  <>                       passes (note `null`)
  no domain, or one without a dot   refused: FQDN required
  an address literal [192.0.2.1]    passes (note `ip`, karma -1)
  MX records               the domain passes when one MX host has a valid address
                           (note `mx`); when none has one -- the host does not
                           exist, or all its addresses are in
                           invalid_resolvable_fromhost -- it is refused (note
                           `invalid MX for <domain>`)
  a null MX (RFC 7505: one MX record "0 .")   refused for good: the domain says it
                           accepts no mail (note `null MX`)
  no MX, A/AAAA records    passes when one address is valid (note `a`), else refused
  none at all              refused (the domain does not exist, or has no address)
  a lookup failed or timed out      temporary refusal, whatever reject_type says

Config file invalid_resolvable_fromhost: addresses no mail exchanger may have, one
network a line (IPv4 or IPv6 CIDR, or one address); a bad line is logged with
file:line and skipped. No file: every address is valid (as in qpsmtpd). A useful
list for the Internet (not for tests on loopback):
  0.0.0.0/8  10.0.0.0/8  127.0.0.0/8  169.254.0.0/16  172.16.0.0/12  192.0.2.0/24
  192.168.0.0/16  198.18.0.0/15  224.0.0.0/4  240.0.0.0/4  ::1/128  fc00::/7  fe80::/10

Arguments:
  reject 1|0|naughty   default 1 (0 only logs and notes; naughty leaves the
                       refusal to the naughty plugin)
  reject_type          default temp (soft): 450, so a sender whose DNS is broken for
                       a moment is not bounced; perm gives 550. A null MX is refused
                       with 550 unless reject_type is given.

Replies (to MAIL):
  450 FQDN required in the envelope sender (#4.1.8)     (perm: 550 ... (#5.1.8))
  550 Sender address has null MX (#5.7.27)
  450 Temporary address resolution failure (#4.4.3)

Notes: transaction notes `resolvable_fromhost` (null, ip, a, mx, whitelist, or
what failed: "unparsable host", "not a FQDN", "null MX", "invalid MX for <domain>",
"invalid address for <domain>", "no MX or address for <domain>", "DNS failure:
...") and `resolvable_fromhost_host` (the domain). Karma -1 for a failure.
Skipped: relay clients and whitelisted hosts or senders (note `whitelist`).
Hooks: mail. Debian's config names it require_resolvable_fromhost (same plugin).
Example: resolvable_fromhost reject_type perm

Differences from qpsmtpd: a null MX is recognised (qpsmtpd looked up the root
name); an A record in an invalid network fails (qpsmtpd let it pass); IPv6
networks can be listed; `reject naughty` defers to naughty (qpsmtpd refused at
once); a DNS failure of an MX host is a temporary refusal, not a permanent one.
"""

import ipaddress

from qpsmtpd_py.api import (
    DECLINED, DENY, DENYSOFT, DENYSOFT_DISCONNECT, DNSFailure, LOGERROR, LOGINFO, REJECT, REJECT_TYPE, Plugin,
    parse_ip,
)

MAX_MX = 10
NULL_MX = ("", ".", "@")


class ResolvableFromhost(Plugin):
    arguments = (
        REJECT,
        REJECT_TYPE.but(default="temp"),
    )

    def parse_invalid(self, lines):
        networks = []
        for line in lines:
            for word in line.split():
                try:
                    networks.append(ipaddress.ip_network(word, strict=False))
                except ValueError:
                    self.log(LOGERROR, f"{line.origin}: '{word}' is not a network; skipped")
        return networks

    def valid(self, address):
        ip = parse_ip(address)
        if ip is None:
            return False
        return not any(ip.version == net.version and ip in net
                       for net in self.parsed_config("invalid_resolvable_fromhost", self.parse_invalid))

    # -- the hook ----------------------------------------------------------------------
    def hook_mail(self, transaction, sender, params=None):
        notes = transaction.notes
        if self.is_immune():
            notes["resolvable_fromhost"] = "whitelist"
            return DECLINED
        if sender.is_null:
            notes["resolvable_fromhost"] = "null"
            self.log(LOGINFO, "pass, null sender")
            return DECLINED
        host = (sender.host or "").rstrip(".")
        notes["resolvable_fromhost_host"] = host
        outcome, detail = self.check(host)
        notes["resolvable_fromhost"] = outcome
        if outcome in ("a", "mx", "ip"):
            if outcome == "ip":
                self.adjust_karma(-1)
            self.log(LOGINFO, f"pass, {detail}")
            return DECLINED
        self.adjust_karma(-1)
        if outcome.startswith("DNS failure"):
            if str(self.args["reject"]) == "0":
                self.log(LOGINFO, f"fail, tolerated ({outcome})")
                return DECLINED
            self.log(LOGINFO, f"fail, temporary ({outcome})")
            return DENYSOFT, "Temporary address resolution failure (#4.4.3)"
        if outcome == "null MX":
            code = None if "reject_type" in self.args.given else DENY
            return self.refuse("Sender address has null MX", "7.27", outcome, code)
        return self.refuse("FQDN required in the envelope sender", "1.8", outcome)

    def refuse(self, text, status, outcome, code=None):
        """get_reject with qpsmtpd's DSN suffix (#4.1.8), its class following the code."""
        code = code or self.get_reject_type()
        klass = "4" if code in (DENYSOFT, DENYSOFT_DISCONNECT) else "5"
        result = self.get_reject(f"{text} (#{klass}.{status})", outcome)
        return (code, result[1]) if isinstance(result, tuple) else result

    # -- the checks --------------------------------------------------------------------
    def check(self, host):
        """(outcome note, detail for the log)."""
        if not host:
            return "unparsable host", "no domain"
        if host.startswith("["):
            return "ip", f"{host} is an address literal"
        if "." not in host:
            return "not a FQDN", host
        resolver = self.resolver
        mx = resolver.submit(host, "MX")
        own = [resolver.submit(host, "A"), resolver.submit(host, "AAAA")]
        try:
            records = mx.result()
        except DNSFailure as exc:
            return f"DNS failure: {exc}", str(exc)
        if records:
            return self.check_mx(host, records)
        return self.check_addresses(host, own)

    def check_mx(self, host, records):
        entries = []
        for record in records:
            preference, _, name = record.partition(" ")
            entries.append((int(preference) if preference.isdigit() else 0, name.rstrip(".")))
        entries.sort()
        names = [name for _p, name in entries if name not in NULL_MX]
        if not names:
            return "null MX", f"{host} has a null MX"
        resolver = self.resolver
        lookups = {name: [resolver.submit(name, "A"), resolver.submit(name, "AAAA")]
                   for name in names[:MAX_MX] if parse_ip(name) is None}
        failure = None
        for name in names[:MAX_MX]:
            if parse_ip(name) is not None:          # an address written as the MX name
                if self.valid(name):
                    return "mx", f"{host} has MX at {name}"
                continue
            for pending in lookups[name]:
                try:
                    addresses = pending.result()
                except DNSFailure as exc:
                    failure = failure or exc
                    continue
                if any(self.valid(a) for a in addresses):
                    return "mx", f"{host} has MX at {name}"
        if failure is not None:
            return f"DNS failure: {failure}", str(failure)
        return f"invalid MX for {host}", f"no MX host of {host} has a valid address"

    def check_addresses(self, host, pendings):
        addresses, failure = [], None
        for pending in pendings:
            try:
                addresses += pending.result()
            except DNSFailure as exc:
                failure = exc
        if any(self.valid(a) for a in addresses):
            return "a", f"{host} has an address"
        if addresses:
            return f"invalid address for {host}", f"{host} has only invalid addresses"
        if failure is not None:
            return f"DNS failure: {failure}", str(failure)
        return f"no MX or address for {host}", f"{host} has no MX and no address"
