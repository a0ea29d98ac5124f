"""helo - check the host name a client gives in HELO/EHLO.

Spam robots lie in HELO: they claim to be a big provider, to be "localhost", to
be us, or send a bare IP. The checks are grouped into policies; the first check
that fails decides.

Policies (argument `policy`, default lenient):
  lenient  is_in_badhelo      the name is listed in config/badhelo
           invalid_localhost  "localhost" (or localhost.localdomain) from an IP
                              that is not loopback
           is_bad_literal     a bracketed address literal that is not a valid
                              one ([1.2.3], [999.1.1.1], [IPv6:junk])
           is_forged_literal  a valid address literal that is not the client's IP
           is_plain_ip        a bare IP address without brackets (RFC 5321 4.1.3)
           is_our_name        our own name (config `me`) or our own IP address
                              ([local IP] literal), from a client that is not on
                              loopback and not on our own address
  rfc      all lenient checks, and
           is_not_fqdn        no dot in the name, or characters other than
                              letters, digits, '-' and '.'
           no_forward_dns     the name has no A or AAAA record
           no_reverse_dns     the client's IP has no PTR record
  strict   all rfc checks, and
           is_address_literal any address literal at all
           no_matching_dns    neither does the name resolve to the client's IP nor
                              does the IP's PTR name match the name (forward-
                              confirmed DNS of the HELO name, RFC 8601's iprev idea)
For the DNS checks the addresses of the name and the client's PTR are asked at
once (the PTR lookup is the engine's own, started at connect). As in qpsmtpd a
match may be loose: an address in the client's /24 (IPv6 /64) counts as a forward
match, and a PTR name in the same domain (its last two labels) as a reverse match,
so server pools (mx0/mx1.example.com) pass. A lookup that fails or times out makes
its check pass (logged): a DNS problem never refuses a client. An address literal
skips the forward and matching checks (the client's PTR is still needed in rfc).

Config file badhelo, one entry a line, compared with the HELO name lowercased:
  a plain name       exact, case-insensitive match (aol.com, yahoo.com)
  a regex            a line with any of  { } [ ] ( ) ^ $ | * + ? \\ !  is a
                     regular expression, matched case-insensitively anywhere in the
                     name (anchor it with ^ and $)
  !regex             negated: the name is refused when it does NOT match
A regex that does not compile is logged with file and line and skipped. Unlike
qpsmtpd, every line is tried (qpsmtpd stopped at the first regex line).

Arguments:
  policy lenient|rfc|strict   default lenient
  reject 0|1|naughty          default 1 (0 logs only; naughty defers to the naughty plugin)
  reject_type perm|temp|disconnect|temp_disconnect   default disconnect
  timeout N                   seconds for the DNS checks (default 5, at most
                              dns_timeout); also written dns_timeout

Replies (qpsmtpd's texts; with the default reject_type the connection is closed
after the 550):
  550 I do not believe you are <name>.                 (badhelo name)
  550 Your HELO hostname is not allowed                (badhelo regex)
  550 You are not localhost
  550 Invalid address literal in HELO (RFC 5321 4.1.3)
  550 Forged IPs not accepted here
  550 Plain IP is invalid HELO hostname (RFC 2821)
  550 <name> is my own name; you are not me
  550 HELO name is not fully qualified. Read RFC 2821
  550 HELO name contains invalid FQDN characters. Read RFC 1035
  550 RFC 2821 allows an address literal, but we do not
  550 HELO hostname does not exist                     (no such name)
  550 HELO hostname did not resolve                    (the name has no address)
  550 no rDNS for <ip>                                 (no such PTR name)
  550 no reverse DNS for <ip>                          (the name has no PTR record)
  550 That HELO hostname fails FCrDNS
Connection notes helo_forward_match and helo_reverse_match record the DNS matches.

Relay clients and whitelisted hosts are not checked (is_immune). A failure costs
karma -1. At data_post every message gets an `X-HELO: <name>` header (an
X-HELO sent by the client is removed first).

Hooks: helo, ehlo, data_post.
Examples:
  helo
  helo policy strict reject 0
  check_spamhelo                     (the old name: badhelo plus the lenient checks)
"""

import re

import ipaddress

from qpsmtpd_py.api import (
    DECLINED, DNSFailure, LOGDEBUG, LOGERROR, LOGINFO, REJECT, REJECT_TYPE, Choice, Keyword,
    Number, Plugin, dnslist, parse_ip, valid_address_literal,
)

POLICIES = {
    "lenient": ("is_in_badhelo", "invalid_localhost", "is_bad_literal", "is_forged_literal",
                "is_plain_ip", "is_our_name"),
}
POLICIES["rfc"] = POLICIES["lenient"] + ("is_not_fqdn", "no_forward_dns", "no_reverse_dns")
POLICIES["strict"] = POLICIES["rfc"] + ("is_address_literal", "no_matching_dns")
DNS_TESTS = ("no_forward_dns", "no_reverse_dns", "no_matching_dns")

_REGEX_CHARS = re.compile(r"[{}\[\]()^$|*+?\\!]")
_FQDN_CHARS = re.compile(r"[^a-zA-Z0-9.\-]")
LOCALHOST_NAMES = ("localhost", "localhost.localdomain")


class Helo(Plugin):
    arguments = (
        Keyword("policy", Choice("lenient", "rfc", "strict"), "lenient", "which checks run"),
        REJECT,
        REJECT_TYPE.but(default="disconnect", help="default disconnect (550, then close)"),
        Keyword("timeout", Number(min=0, unit="seconds"), 5.0, "for the DNS checks",
                aliases=("dns_timeout",)),
    )

    def register(self, *args):
        self.policy = self.args["policy"]
        self.dns_timeout = self.args["timeout"]
        self.tests = POLICIES[self.policy]

    # -- hooks ------------------------------------------------------------------------
    def hook_helo(self, transaction, host, *rest):
        return self.check(host)

    def hook_ehlo(self, transaction, host, *rest):
        return self.check(host)

    def hook_data_post(self, transaction):
        transaction.header.delete("X-HELO")
        transaction.header.add("X-HELO", self.connection.hello_host or "", prepend=True)
        return DECLINED

    def check(self, host):
        if self.is_immune():
            return DECLINED
        self.start_dns(host)
        for name in self.tests:
            failure = getattr(self, name)(host)
            if failure:
                message, log_info = failure
                self.adjust_karma(-1)
                return self.get_reject(message, f"{log_info}: {host}")
        self.log(LOGINFO, "pass")
        return DECLINED

    # -- the checks: each returns (reply text, log text) on failure, else None ------------
    def is_in_badhelo(self, host):
        lhost = host.lower()
        for entry, regex, negate in self.parsed_config("badhelo", self.parse_badhelo):
            if regex is None:
                if lhost == entry:
                    return f"I do not believe you are {host}.", "in badhelo"
            elif bool(regex.search(lhost)) != negate:
                return "Your HELO hostname is not allowed", f"badhelo pattern match ({entry})"
        return None

    def parse_badhelo(self, lines):
        """[(entry, compiled regex or None for a plain name, negated)]; a bad
        pattern is logged (once per change of the file) and skipped."""
        entries = []
        for entry in lines:
            if not _REGEX_CHARS.search(entry):
                entries.append((entry.lower(), None, False))
                continue
            negate = entry.startswith("!")
            try:
                regex = re.compile(entry[1:] if negate else entry, re.IGNORECASE)
            except re.error as exc:
                self.log(LOGERROR, f"{entry.origin}: badhelo pattern '{entry}' skipped: {exc}")
                continue
            entries.append((entry, regex, negate))
        return entries

    def invalid_localhost(self, host):
        if host.lower() not in LOCALHOST_NAMES or is_loopback(self.connection.remote_ip):
            return None
        return "You are not localhost", "invalid localhost"

    def is_bad_literal(self, host):
        if host.startswith("[") and not (host.endswith("]") and valid_address_literal(host)):
            return "Invalid address literal in HELO (RFC 5321 4.1.3)", "invalid address literal"
        return None

    def is_forged_literal(self, host):
        ip = literal_ip(host)
        if ip is None or ip == parse_ip(self.connection.remote_ip):
            return None
        return "Forged IPs not accepted here", "forged IP literal"

    def is_plain_ip(self, host):
        if parse_ip(host) is None or host.startswith("["):
            return None
        return "Plain IP is invalid HELO hostname (RFC 2821)", "plain IP"

    def is_our_name(self, host):
        conn = self.connection
        remote = parse_ip(conn.remote_ip)
        local = parse_ip(conn.local_ip)
        if remote is None or remote.is_loopback or remote == local:
            return None
        if host.lower().rstrip(".") == (self.app.me or "").lower() or (
                local is not None and literal_ip(host) == local):
            return f"{host} is my own name; you are not me", "our own name or IP"
        return None

    def is_not_fqdn(self, host):
        if host.startswith("["):
            return None
        if "." not in host:
            return "HELO name is not fully qualified. Read RFC 2821", "not FQDN"
        if _FQDN_CHARS.search(host):
            return "HELO name contains invalid FQDN characters. Read RFC 1035", "invalid FQDN chars"
        return None

    def is_address_literal(self, host):
        if literal_ip(host) is None:
            return None
        return "RFC 2821 allows an address literal, but we do not", "bracketed IP"

    # -- the DNS checks (policies rfc and strict) ---------------------------------------
    def start_dns(self, host):
        """Ask for the name's addresses and the client's PTR at once, before any check."""
        if not any(test in DNS_TESTS for test in self.tests) or host.startswith("["):
            return
        timeout = dnslist.lookup_timeout(self, self.dns_timeout)
        for rdtype in ("A", "AAAA"):
            self.resolver.submit(host.rstrip("."), rdtype, timeout)
        try:
            self.resolver.submit_ptr(self.connection.remote_ip)
        except ValueError:
            pass

    def no_forward_dns(self, host):
        if host.startswith("["):
            return None
        timeout = dnslist.lookup_timeout(self, self.dns_timeout)
        found, failure, nxdomain = [], None, True
        for rdtype in ("A", "AAAA"):
            try:
                answers = self.resolver.submit(host.rstrip("."), rdtype, timeout).result()
            except DNSFailure as exc:
                failure, nxdomain = exc, False
                continue
            found += answers
            nxdomain = nxdomain and answers.nxdomain
        if not found:
            if failure is not None:
                self.log(LOGERROR, f"skip no_forward_dns, lookup failed: {failure}")
                self.connection.notes["helo_dns_error"] = 1
                return None
            if nxdomain:
                return "HELO hostname does not exist", "no such host"
            return "HELO hostname did not resolve", "no forward DNS"
        client = parse_ip(self.connection.remote_ip)
        if any(_near(parse_ip(address), client) for address in found):
            self.connection.notes["helo_forward_match"] = 1
        self.log(LOGDEBUG, "pass, forward DNS")
        return None

    def no_reverse_dns(self, host):
        ip = self.connection.remote_ip
        try:
            names = self.resolver.submit_ptr(ip).result()
        except ValueError:
            return None
        except DNSFailure as exc:
            self.log(LOGERROR, f"skip no_reverse_dns, lookup failed: {exc}")
            self.connection.notes["helo_dns_error"] = 1
            return None
        if not names:
            if names.nxdomain:
                return f"no rDNS for {ip}", "no rDNS"
            return f"no reverse DNS for {ip}", "no rDNS"
        helo = host.lower().rstrip(".")
        for name in names:
            name = name.lower().rstrip(".")
            if name.count(".") >= 1 and (name == helo or name.split(".")[-2:] == helo.split(".")[-2:]):
                self.connection.notes["helo_reverse_match"] = 1
        self.log(LOGDEBUG, "pass, reverse DNS")
        return None

    def no_matching_dns(self, host):
        notes = self.connection.notes
        if notes.get("helo_forward_match") and notes.get("helo_reverse_match"):
            self.adjust_karma(1)              # a perfect match
            return None
        if notes.get("helo_forward_match") or notes.get("helo_reverse_match"):
            return None
        if host.startswith("[") or notes.get("helo_dns_error"):
            return None
        return "That HELO hostname fails FCrDNS", "no matching DNS"


def literal_ip(host):
    """The IP of a valid address literal '[1.2.3.4]' / '[IPv6:...]', else None."""
    if not (host.startswith("[") and host.endswith("]") and valid_address_literal(host)):
        return None
    inner = host[1:-1]
    return parse_ip(inner[5:] if inner[:5].lower() == "ipv6:" else inner)


def _near(address, client):
    """The same address, or one in the client's /24 (IPv6: /64)."""
    if address is None or client is None or address.version != client.version:
        return False
    bits = 24 if client.version == 4 else 64
    return address in ipaddress.ip_network(f"{client}/{bits}", strict=False)


def is_loopback(ip):
    parsed = parse_ip(ip)
    return parsed is not None and parsed.is_loopback
