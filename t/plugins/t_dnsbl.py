"""t_dnsbl - test plugin for the resolver API: start one lookup per list zone at
connect, collect them at RCPT (the shape of qpsmtpd's dnsbl).

Arguments: the list zones (default dnsbl.test). A listed client gets
`550 <TXT of the zone>`; a lookup that fails gets 450.
"""

from qpsmtpd_py.api import DECLINED, DENY, DENYSOFT, DNSFailure, LOGINFO, Plugin, reverse_ip


class TDnsbl(Plugin):
    def register(self, *zones):
        self.zones = list(zones) or ["dnsbl.test"]

    def hook_connect(self, transaction):
        name = reverse_ip(self.connection.remote_ip)
        self.connection.notes["t_dnsbl"] = [
            (zone, self.resolver.submit(f"{name}.{zone}", "A"),
             self.resolver.submit(f"{name}.{zone}", "TXT")) for zone in self.zones]
        return DECLINED

    def hook_rcpt(self, transaction, rcpt, params):
        for zone, a, txt in self.connection.notes["t_dnsbl"]:
            try:
                if a.result(timeout=2):
                    self.log(LOGINFO, f"fail, listed in {zone}")
                    return DENY, " ".join(txt.result()) or f"listed in {zone}"
            except DNSFailure as exc:
                self.log(LOGINFO, f"error, {exc}")
                return DENYSOFT, f"DNS lookup in {zone} failed"
        return DECLINED
