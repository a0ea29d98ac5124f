"""What the DNS list plugins share (dnsbl, rhsbl, dns_whitelist_soft, uribl, fcrdns,
nodialup ...): the names to ask, what counts as a listing, a safe reply text from a
TXT record, and lookups that start at connect and are collected once.

Lookups start early and are collected late. Each plugin starts its lookups in a
connect hook registered ahead of every other connect hook
(`self.register_hook("connect", self.start_lookups, unshift=True)`), so the
lookups of all of them and the engine's own PTR lookup are in flight together,
and it collects them in the hook that decides (RCPT for dnsbl). The outcome goes
into a connection note, so a session with 1000 recipients asks and waits once.
Collecting waits for each lookup at most until its own deadline (dns_timeout
after it started), so N zones cost one round trip, not N.
"""

import ipaddress
import re

from .dns import DNSFailure, reverse_ip

LIST_ANSWERS = ipaddress.ip_network("127.0.0.0/8")      # RFC 5782 2.1
ERROR_ANSWERS = ipaddress.ip_network("127.255.255.0/24")  # list operators' error codes
REPLY_LIMIT = 300                                         # characters of TXT in a reply
_ZONE = re.compile(r"(?=.{1,253}$)([A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.?)+")


def client_name(ip, zone):
    """The name a list zone is asked for a client address: '4.3.2.1.zone', the IPv6
    nibble form for IPv6 (RFC 5782 2.4). ValueError for something not an IP."""
    return f"{reverse_ip(ip)}.{zone}"


def valid_zone(zone):
    """True for a DNS name that can be a list zone (letters, digits, - and _)."""
    return bool(_ZONE.fullmatch(zone))


def reply_text(text, limit=REPLY_LIMIT):
    """A TXT record (or any DNS-supplied text) made safe for one SMTP reply line:
    control characters (CR, LF, NUL ...) and non-ASCII become spaces or '?', runs
    of blanks one space, at most `limit` characters."""
    out = []
    for ch in str(text):
        if ch in "\t\r\n\v\f" or ord(ch) < 32 or ord(ch) == 127:
            out.append(" ")
        elif ord(ch) > 126:
            out.append("?")
        else:
            out.append(ch)
    clean = " ".join("".join(out).split())
    return clean if len(clean) <= limit else clean[:limit - 3] + "..."


def classify(addresses):
    """A records from a list -> ('listed', [ip, ...]) for answers in 127.0.0.0/8,
    ('error', text) for the operator's error codes (127.255.255.x) or answers
    outside 127/8 (a resolver that makes up answers), ('clean', []) for none."""
    listed, odd = [], []
    for text in addresses:
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            odd.append(text)
            continue
        if ip.version == 4 and ip in LIST_ANSWERS and ip not in ERROR_ANSWERS:
            listed.append(text)
        else:
            odd.append(text)
    if listed:
        return "listed", listed
    if odd:
        return "error", f"not a list answer: {', '.join(odd)}"
    return "clean", []


def collect(pendings):
    """{key: Pending} -> {key: answers, or the DNSFailure}; waits for each lookup
    at most until its own deadline, all of them having started together."""
    results = {}
    for key, pending in pendings.items():
        try:
            results[key] = pending.result()
        except DNSFailure as exc:
            results[key] = exc
    return results


def lookup_timeout(plugin, seconds):
    """A plugin's `timeout` argument capped at dns_timeout (None: dns_timeout), so a
    DNS server that does not answer never costs a session more than dns_timeout."""
    limit = plugin.resolver.timeout
    return limit if seconds is None else min(float(seconds), limit)


# -- the client's forward-confirmed reverse DNS (fcrdns, require_resolvable_client, helo) --
MAX_PTR_NAMES = 5       # PTR names followed forward: 50 PTR records cost 10 lookups, not 100


def start_iprev(plugin):
    """Start the client's PTR lookup (shared with the engine's) and, as soon as it
    answers, the A and AAAA lookups of its first MAX_PTR_NAMES names, without waiting."""
    resolver = plugin.resolver
    try:
        ptr = resolver.submit_ptr(plugin.connection.remote_ip)
    except ValueError:
        return

    def forward(names):
        for name in names[:MAX_PTR_NAMES]:
            resolver.submit(name, "A")
            resolver.submit(name, "AAAA")
    resolver.then(ptr, forward)


class IPRev:
    """The iprev result of RFC 8601 2.7.3 for the client: `result` pass, fail,
    permerror (no PTR record) or temperror (a lookup failed); `names` the PTR
    names, `name` the one that resolves back, `network` True when it resolves only
    to a neighbour (same /24, IPv6 /64: counted as a pass, as qpsmtpd's fcrdns does);
    `reason` for logs."""

    def __init__(self, ip, result, names=(), name=None, network=False, reason=""):
        self.ip, self.result, self.names = ip, result, list(names)
        self.name, self.network, self.reason = name, network, reason

    def auth_result(self):
        """The Authentication-Results part: iprev=pass policy.iprev=192.0.2.1 (name)."""
        comment = self.name or (self.reason if self.result != "fail" else ", ".join(self.names[:3]))
        comment = re.sub(r"[^A-Za-z0-9 .,:/_-]", "", comment or "")
        return f"iprev={self.result} policy.iprev={self.ip}" + (f" ({comment})" if comment else "")

    def __repr__(self):
        return f"<IPRev {self.result} {self.ip} {self.name or self.names} {self.reason}>"


def iprev(plugin):
    """The client's IPRev, worked out once per connection (connection note `iprev`);
    waits for the lookups start_iprev() began, at most until their deadline."""
    conn = plugin.connection
    found = conn.notes.get("iprev")
    if isinstance(found, IPRev):
        return found
    try:
        ip = ipaddress.ip_address(conn.remote_ip)
    except ValueError:
        return IPRev(conn.remote_ip, "permerror", reason="the client address is not an IP")
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    resolver = plugin.resolver
    try:
        names = resolver.submit_ptr(str(ip)).result()
    except DNSFailure as exc:
        found = IPRev(str(ip), "temperror", reason=f"PTR lookup failed: {exc}")
    else:
        found = _confirm(resolver, ip, names) if names else IPRev(str(ip), "permerror",
                                                                    reason="no PTR record")
    conn.notes["iprev"] = found
    return found


def _confirm(resolver, ip, names):
    names = [n.lower().rstrip(".") for n in names]
    lookups = {(name, rdtype): resolver.submit(name, rdtype)
               for name in names[:MAX_PTR_NAMES] for rdtype in ("A", "AAAA")}
    results = collect(lookups)
    neighbour, failures = None, []
    for name in names[:MAX_PTR_NAMES]:
        for rdtype in ("A", "AAAA"):
            answers = results[(name, rdtype)]
            if isinstance(answers, DNSFailure):
                failures.append(str(answers))
                continue
            for text in answers:
                address = ipaddress.ip_address(text)
                if address == ip:
                    return IPRev(str(ip), "pass", names, name)
                if neighbour is None and _same_network(address, ip):
                    neighbour = name
    if neighbour:
        return IPRev(str(ip), "pass", names, neighbour, network=True,
                     reason=f"{neighbour} resolves to a neighbour address")
    if failures:
        return IPRev(str(ip), "temperror", names, reason=f"forward lookup failed: {failures[0]}")
    return IPRev(str(ip), "fail", names, reason="no PTR name resolves back to the address")


def _same_network(a, b):
    if a.version != b.version:
        return False
    bits = 24 if a.version == 4 else 64
    return ipaddress.ip_network(f"{a}/{bits}", strict=False) == ipaddress.ip_network(
        f"{b}/{bits}", strict=False)
