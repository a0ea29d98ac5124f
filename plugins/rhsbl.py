"""rhsbl - refuse mail from sender domains and HELO names listed in DNS domain lists
(right-hand-side block lists).

The domain of the envelope sender (MAIL FROM:<user@domain>) and the name the client
gave in HELO/EHLO are looked up in every zone of config/rhsbl_zones
(<domain>.<zone>). The HELO name is asked as soon as HELO is given, the sender's
domain at MAIL, all zones at once; the refusal is the answer to MAIL.

Config file rhsbl_zones, one zone a line:
  zone              the zone publishes TXT records: a TXT answer means listed
                    and its text goes into the reply
  zone message...   the zone publishes A records: an A answer in 127.0.0.0/8
                    means listed and the reply says `message`
  e.g.  dsn.rfc-ignorant.org does not accept bounces
No file, or no lines: the plugin does nothing.

Arguments:
  reject 1|0|naughty       default 1 (0 only logs; naughty leaves the refusal to the
                           naughty plugin)
  reject_type perm|temp|disconnect|temp_disconnect   default perm
  a lone word              qpsmtpd's old form: `rhsbl disconnect`

Replies (to MAIL):
  550 Mail from <domain> rejected because it <message or TXT>
  550 Mail from HELO <helo name> rejected because it <message or TXT>
The TXT text is made one safe line (control characters removed, at most 300
characters). A lookup that fails or times out counts as not listed (logged); an
A answer that is no listing (127.255.255.x error codes, addresses outside 127/8)
is logged. The sender domain is checked before the HELO name.

Skipped: relay clients and whitelisted hosts or senders (is_immune), the null
sender <> (bounces come from anywhere), address literals ([192.0.2.1]) and HELO
names that are no domain names.

Karma -1 for a listed domain. Transaction note `rhsbl` = the refusal text.
Hooks: helo, ehlo (lookups start), mail.
Example: rhsbl reject_type disconnect

Differences from qpsmtpd 0.94: the HELO name is checked too (0.94 only mentioned
it in the reply, and used the HELO wording for every TXT listing of the sender's
domain); the message of a `zone message` line is used (0.94 replied with the DNS
name).
"""

import re

from qpsmtpd_py.api import (
    DECLINED, LOGDEBUG, LOGERROR, LOGINFO, REJECT, REJECT_TYPE, Choice, DNSFailure, Plugin,
    Positional, dnslist,
)

_DOMAIN = re.compile(r"(?=.{1,253}$)(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.)+"
                     r"[A-Za-z0-9-]{2,63}\.?")


class Rhsbl(Plugin):
    arguments = (
        REJECT,
        REJECT_TYPE.but(default="perm"),
        Positional("REJECT_TYPE", Choice("perm", "temp", "disconnect", "temp_disconnect",
                                         aliases={"hard": "perm", "soft": "temp"}), None,
                   "qpsmtpd's old form: a lone reject_type word (rhsbl disconnect)"),
    )

    def register(self, *args):
        if self.args["REJECT_TYPE"] and "reject_type" not in self.args.given:
            self.args["reject_type"] = self.args["REJECT_TYPE"]

    def parse_zones(self, lines):
        """[(zone, message or None)] of rhsbl_zones; bad lines logged and skipped."""
        zones = []
        for line in lines:
            zone, _, message = line.strip().partition(" ")
            zone = zone.lower().rstrip(".")
            if not dnslist.valid_zone(zone):
                self.log(LOGERROR, f"{line.origin}: '{zone}' is not a zone name; line skipped")
                continue
            zones.append((zone, message.strip() or None))
        return zones

    def start(self, domain):
        """{zone: (message, Pending)} for one domain, or None."""
        zones = self.parsed_config("rhsbl_zones", self.parse_zones)
        if not zones or not domain or not _DOMAIN.fullmatch(domain):
            return None
        domain = domain.lower().rstrip(".")
        return {zone: (message, self.resolver.submit(f"{domain}.{zone}",
                                                     "TXT" if message is None else "A"))
                for zone, message in zones}

    # -- hooks ---------------------------------------------------------------------------
    def hook_helo(self, transaction, host, *rest):
        self.connection.notes["rhsbl_helo"] = self.start(host)
        return DECLINED

    hook_ehlo = hook_helo

    def hook_mail(self, transaction, sender, params=None):
        if self.is_immune():
            return DECLINED
        if sender.is_null:
            self.log(LOGINFO, "pass, null sender")
            return DECLINED
        checks = [("sender", sender.host, self.start(sender.host)),
                  ("helo", self.connection.hello_host, self.connection.notes.get("rhsbl_helo"))]
        for kind, domain, pending in checks:
            text = self.listing(domain, pending)
            if text is None:
                continue
            self.adjust_karma(-1)
            if kind == "sender":
                message = f"Mail from {sender.host} rejected because it {text}"
            else:
                message = f"Mail from HELO {domain} rejected because it {text}"
            transaction.notes["rhsbl"] = message
            return self.get_reject(message, f"{domain}: {text}")
        self.log(LOGINFO, "pass")
        return DECLINED

    def listing(self, domain, pending):
        """The listing text for `domain` from its lookups, or None."""
        if not pending:
            return None
        answers = dnslist.collect({zone: p for zone, (_m, p) in pending.items()})
        for zone, (message, _p) in pending.items():
            result = answers[zone]
            if isinstance(result, DNSFailure):
                self.log(LOGERROR, f"error, {domain} in {zone}: {result}; not counted as listed")
                continue
            if message is None:
                if result:
                    return dnslist.reply_text(" ".join(result)) or f"is listed in {zone}"
                continue
            verdict, detail = dnslist.classify(result)
            if verdict == "error":
                self.log(LOGERROR, f"error, {domain} in {zone}: {detail}")
            elif verdict == "listed":
                self.log(LOGDEBUG, f"{domain} in {zone}: {', '.join(detail)}")
                return dnslist.reply_text(message)
        return None
