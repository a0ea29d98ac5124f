"""relay - decide whether the client may relay (sets connection.relay_client).

Config files:
  relayclients      one entry a line: an IP (1.2.3.4), an octet prefix ending in
                    '.' (192.168.), or a CIDR block (10.0.0.0/8, 2001:db8::/32).
                    IPv6 in any spelling: 2001:db8::1 and
                    2001:0DB8:0000:0000:0000:0000:0000:0001 are the same entry, and
                    whole hextets (2001:0db8:0005: or 2001:DB8) are a prefix
  morerelayclients  more entries as morerelayclients.cdb (keys as in relayclients,
                    without CIDR blocks)
  norelayclients    entries as in relayclients that may never relay; overrides
                    everything

Environment: RELAYCLIENT (set, even empty) lets the client relay, as tcpserver's
rules set it; ::1 always may relay.

Arguments:
  only 1    accept recipients only from relay clients (DENY everyone else at RCPT)

Hooks: connect (and rcpt with `only`). Other plugins honour the flag through
is_immune(); rcpt_ok then accepts any recipient.

Example:  relay
"""

import os

from qpsmtpd_py.api import (
    DECLINED, DENY, LOGINFO, LOGNOTICE, OK, Bool, IPList, Keyword, Plugin, ip_candidates,
)


class Relay(Plugin):
    arguments = (
        Keyword("only", Bool(), False, "accept recipients only from relay clients (DENY "
                "everyone else at RCPT)"),
    )

    def register(self, *args):
        if self.args["only"]:
            self.register_hook("rcpt", self.relay_only)

    def hook_connect(self, transaction):
        conn = self.connection
        ip = conn.remote_ip
        if ip in self.parsed_config("norelayclients", IPList):
            self.log(LOGNOTICE, f"{ip} in norelayclients")
            conn.relay_client = False
            return DECLINED
        if "RELAYCLIENT" in os.environ:
            conn.relay_client = True
            self.log(LOGINFO, "pass: enabled by env")
            return DECLINED
        if ip == "::1" or ip in self.parsed_config("relayclients", IPList) or self._in_more(ip):
            conn.relay_client = True
            self.log(LOGINFO, f"pass: {ip} may relay")
            return DECLINED
        self.log(LOGINFO, "skip: no match")
        return DECLINED

    def _in_more(self, ip):
        more = self.config_map("morerelayclients")
        if more is None:
            return False
        return any(candidate in more for candidate in ip_candidates(ip))

    def relay_only(self, transaction, rcpt, params=None):
        return OK if self.connection.relay_client else DENY
