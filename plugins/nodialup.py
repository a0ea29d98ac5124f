"""nodialup - refuse mail sent straight from dial-up, DSL, cable and other dynamic
addresses, recognised by the client's host name (PTR).

Home connections should send through their provider's mail server; mail coming
directly from them is nearly always from a hijacked PC. Providers name such
addresses after the address itself or after the kind of line
(adsl-192-0-2-10.dyn.example.net, p5B0C2A3F.dip0.example.de, 10.2.0.192.pool.example.com).

A PTR name counts as dynamic when
  * it holds the client's IPv4 address, its four numbers in order or reversed,
    separated by '-', '.', '_' or nothing, leading zeros allowed
    (192-0-2-10, 10.2.0.192, 192000002010), or in hex (c000020a) -- argument
    ip_in_name 0 switches this off; and/or
  * one of its labels (or a '-' part of a label) is a dynamic-line word, optionally
    followed by digits: dial, dialup, dialin, dsl, adsl, sdsl, vdsl, xdsl, ppp,
    pppoe, dhcp, dyn, dynamic, dynip, pool, cable, cpe, broadband, residential
    (e.g. "dsl", "pool12", "dyn-3") -- or, when config/nodialup_patterns has lines,
    one of those instead.
A client without a PTR name is not this plugin's business (see
require_resolvable_client). The PTR lookup is the engine's own, started before the
connect hooks; it is read at the first RCPT.

Config file nodialup_patterns: one regular expression a line (Python syntax,
case-insensitive, searched anywhere in the PTR name), replacing the words above;
a line that does not compile is logged with file:line and skipped.
  (^|[.-])(dsl|cable)[0-9]*([.-]|$)
  \\.dynamic\\.example\\.net$

Arguments:
  reject 1|0|naughty   default 1 (0 only logs)
  reject_type          default perm
  ip_in_name 1|0       default 1: the address-in-the-name rule

Reply (to RCPT; postmaster and abuse stay reachable):
  550 Dynamic or dial-up address <name> [<ip>]: please send through your provider's mail server
Skipped: relay clients and whitelisted hosts (is_immune: authenticated users on a
home line may send). Karma -1 for a dynamic name.
Notes: connection note `nodialup` = the dynamic PTR name ('' when none).
Hooks: connect (starts the PTR lookup when -H switched the engine's off), rcpt.
Example: nodialup reject_type disconnect
"""

import ipaddress
import re

from qpsmtpd_py.api import (
    DECLINED, DNSFailure, LOGERROR, LOGINFO, REJECT, REJECT_TYPE, Bool, Keyword, Plugin,
)

DYNAMIC_WORDS = (r"(?:^|[.-])(?:dial(?:up|in)?|[asvx]?dsl|pppoe|ppp|dhcp|dyn(?:amic|ip)?|pool|"
                 r"cable|cpe|broadband|residential)\d*(?:[.-]|$)")
SPECIAL_ACCOUNTS = ("postmaster", "abuse")


def ip_patterns(ip):
    """Regexes finding an IPv4 address written into a host name."""
    octets = ip.exploded.split(".")
    numbers = [rf"0*{o}" for o in octets]
    sep = r"[-._]?"
    edge_l, edge_r = r"(?<![0-9])", r"(?![0-9])"
    return [re.compile(edge_l + sep.join(numbers) + edge_r),
            re.compile(edge_l + sep.join(reversed(numbers)) + edge_r),
            re.compile(r"(?<![0-9a-f])" + "".join(f"{int(o):02x}" for o in octets) + r"(?![0-9a-f])",
                       re.I)]


class Nodialup(Plugin):
    arguments = (
        REJECT,
        REJECT_TYPE.but(default="perm"),
        Keyword("ip_in_name", Bool(), True, "a PTR name holding the client's address is dynamic"),
    )

    def register(self, *args):
        self.register_hook("connect", self.start_lookups, unshift=True)

    def start_lookups(self, transaction):
        try:
            self.resolver.submit_ptr(self.connection.remote_ip)
        except ValueError:
            pass
        return DECLINED

    def compile(self, lines):
        patterns = []
        for line in lines:
            try:
                patterns.append(re.compile(line.strip(), re.I))
            except re.error as exc:
                self.log(LOGERROR, f"{line.origin}: pattern '{line.strip()}' skipped: {exc}")
        return patterns or [re.compile(DYNAMIC_WORDS, re.I)]

    def dynamic_name(self):
        """The client's PTR name that looks dynamic, or '' (once per connection)."""
        notes = self.connection.notes
        if "nodialup" in notes:
            return notes["nodialup"]
        ip = self.connection.remote_ip
        try:
            names = self.resolver.submit_ptr(ip).result()
        except (DNSFailure, ValueError) as exc:
            self.log(LOGINFO, f"skip, no PTR name known ({exc})")
            names = []
        patterns = list(self.parsed_config("nodialup_patterns", self.compile))
        address = ipaddress.ip_address(ip) if names else None
        if address is not None and address.version == 4 and self.args["ip_in_name"]:
            patterns += ip_patterns(address)
        found = next((n.rstrip(".") for n in names if any(p.search(n.rstrip(".")) for p in patterns)), "")
        notes["nodialup"] = found
        if found:
            self.adjust_karma(-1)
        else:
            self.log(LOGINFO, f"pass, {names[0] if names else 'no PTR name'}")
        return found

    def hook_rcpt(self, transaction, rcpt, params=None):
        if self.is_immune():
            return DECLINED
        if rcpt.user and rcpt.user.lower() in SPECIAL_ACCOUNTS:
            return DECLINED
        name = self.dynamic_name()
        if not name:
            return DECLINED
        ip = self.connection.remote_ip
        return self.get_reject(f"Dynamic or dial-up address {name} [{ip}]: please send through "
                               "your provider's mail server", name)
