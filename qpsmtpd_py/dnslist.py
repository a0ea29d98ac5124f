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
