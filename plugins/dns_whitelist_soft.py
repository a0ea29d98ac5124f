"""dns_whitelist_soft - exempt clients listed in DNS whitelists from later checks.

The client's address is looked up in every zone of config/whitelist_zones at
connect, together with every other plugin's lookups. A listed client gets the
connection note `whitelisthost`, which every policy plugin honours (is_immune:
dnsbl, rhsbl, helo, resolvable_fromhost, earlytalker ...): it is exempted from
them, but it may not relay. The plugin never refuses anything. Keeping the list
in DNS suits several servers sharing one whitelist.

Config file whitelist_zones, one zone a line (words after the zone are ignored,
as in qpsmtpd):
  dnswl.example.net
Each zone is asked for the A and the TXT record of the client's reversed address
(IPv6: the nibble form of RFC 5782). Listed means an A record in 127.0.0.0/8 --
except 127.255.255.x and 127.0.0.255, the "query refused" codes of list
operators, which are logged -- or a TXT record. The note holds the TXT text, or
"whitelisted by <zone>" when the zone answered only an A record.

When: the answers are collected in this plugin's own connect hook, so list
dns_whitelist_soft before the plugins it should override (qpsmtpd collected them
at the first RCPT only, too late for plugins that decide at connect, HELO or
MAIL). The lookups started earlier, with every other plugin's, so collecting
them costs at most one round trip.

Arguments:
  timeout N    seconds to wait for the answers, at most dns_timeout (the default;
               qpsmtpd waited up to 4 seconds)
A lookup that fails or times out counts as not listed (logged).

Notes: connection note `whitelisthost` (the text above).
Hooks: connect.
Example: dns_whitelist_soft, with config/whitelist_zones: list.dnswl.org

Differences from qpsmtpd: the answers are collected at connect, not at the
first RCPT (see When); A records are asked too, so A-only lists work; the note
of an A-only listing does not say "Blocked by <zone>"; IPv6 clients are looked up.
"""

import ipaddress

from qpsmtpd_py.api import DECLINED, DNSFailure, LOGERROR, LOGINFO, Keyword, Number, Plugin, dnslist

REFUSED_CODES = (ipaddress.ip_address("127.0.0.255"),)     # dnswl.org: query refused


class DnsWhitelistSoft(Plugin):
    arguments = (
        Keyword("timeout", Number(min=0.1, unit="seconds"), None,
                "seconds to wait for the answers (at most dns_timeout, the default)"),
    )

    def register(self, *args):
        self.register_hook("connect", self.start_lookups, unshift=True)

    def parse_zones(self, lines):
        zones = []
        for line in lines:
            zone = line.split()[0].lower().rstrip(".")
            if dnslist.valid_zone(zone):
                zones.append(zone)
            else:
                self.log(LOGERROR, f"{line.origin}: '{zone}' is not a zone name; line skipped")
        return zones

    def start_lookups(self, transaction):
        conn = self.connection
        zones = self.parsed_config("whitelist_zones", self.parse_zones)
        if not zones:
            return DECLINED
        try:
            names = {zone: dnslist.client_name(conn.remote_ip, zone) for zone in zones}
        except ValueError:
            return DECLINED
        timeout = dnslist.lookup_timeout(self, self.args["timeout"])
        conn.notes["whitelist_pending"] = {
            zone: (self.resolver.submit(name, "A", timeout), self.resolver.submit(name, "TXT", timeout))
            for zone, name in names.items()}
        return DECLINED

    def hook_connect(self, transaction):
        conn = self.connection
        pending = conn.notes.pop("whitelist_pending", None)
        if not pending or conn.notes.get("whitelisthost"):
            return DECLINED
        for zone, (a, txt) in pending.items():
            note = self.answer(zone, a, txt)
            if note:
                conn.notes["whitelisthost"] = note
                self.log(LOGINFO, f"pass, {conn.remote_ip} is whitelisted: {note}")
                return DECLINED
        self.log(LOGINFO, "skip, not whitelisted")
        return DECLINED

    def answer(self, zone, a, txt):
        """The note text for one zone's answers, or None."""
        results = dnslist.collect({"A": a, "TXT": txt})
        addresses = [] if isinstance(results["A"], DNSFailure) else results["A"]
        texts = [] if isinstance(results["TXT"], DNSFailure) else results["TXT"]
        for kind, result in results.items():
            if isinstance(result, DNSFailure):
                self.log(LOGERROR, f"error, {zone} {kind}: {result}")
        refused = [ip for ip in addresses if _address(ip) in REFUSED_CODES]
        if refused:
            self.log(LOGERROR, f"error, {zone}: query refused ({', '.join(refused)})")
            return None
        verdict, detail = dnslist.classify(addresses)
        if verdict == "error":
            self.log(LOGERROR, f"error, {zone}: {detail}")
            return None
        if texts:
            return dnslist.reply_text(" ".join(texts)) or f"whitelisted by {zone}"
        if verdict == "listed":
            return f"whitelisted by {zone}"
        return None


def _address(text):
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None
