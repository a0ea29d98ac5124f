"""Client IP lists as qpsmtpd's files write them: exact IPs, octet prefixes
('192.168.' or '10.'), CIDR blocks (v4 and v6).

IPv6 entries may be written in any form: compressed or expanded
('2001:0DB8:0000:0000:0000:0000:0000:0001', as qpsmtpd's sample relayclients
recommends), and a prefix of whole hextets with or without a trailing colon
('2001:0db8:0000:', 'fdda:b13d:e431:ae06:', '2001:DB8') stands for that network
(/48, /64, /32), whatever the client's address looks like when written.
"""

import functools
import ipaddress
import re

_STRIP_LAST = re.compile(r"(\d|\w)+(:|\.)?$")
_V6_PREFIX = re.compile(r"^(?:[0-9a-f]{1,4}:){1,7}$|^[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){1,6}$", re.I)


def ip_prefixes(ip):
    """'192.168.1.5' -> ['192.168.1.5', '192.168.1.', '192.168.', '192.'] (qpsmtpd's
    octet-stripping), so list entries like '192.168.' match."""
    out = []
    while ip:
        out.append(ip)
        stripped = _STRIP_LAST.sub("", ip, count=1)
        if stripped == ip:
            break
        ip = stripped
    return out


def v6_prefix_network(text):
    """'2001:0db8:0000:' or '2001:DB8' -> the network of those whole hextets
    (2001:db8::/48, 2001:db8::/32); None for anything else."""
    if not _V6_PREFIX.match(text):
        return None
    groups = text.rstrip(":").split(":")
    padded = ":".join(groups + ["0"] * (8 - len(groups)))
    return ipaddress.ip_network(f"{padded}/{16 * len(groups)}")


def ip_candidates(ip):
    """Every form of a client IP a key-value list (morerelayclients.cdb) may hold:
    qpsmtpd's octet-stripped prefixes and, for IPv6, the expanded address and its
    hextet prefixes (padded, or unpadded with or without the trailing colon), in
    lower and upper case."""
    text, parsed, prefixes = _ip_facts(str(ip))
    out = list(prefixes)
    if parsed is not None and parsed.version == 6:
        groups = parsed.exploded.split(":")
        short = [g.lstrip("0") or "0" for g in groups]
        forms = [parsed.exploded]
        for n in range(7, 0, -1):
            forms += [":".join(groups[:n]) + ":", ":".join(short[:n]) + ":", ":".join(short[:n])]
        for form in forms + [f.upper() for f in forms + out]:
            if form not in out:
                out.append(form)
    return out


@functools.lru_cache(maxsize=4096)
def parse_ip(text):
    """An ip_address (IPv4-mapped IPv6 as IPv4), or None for text that is not one.
    Cached: every connection asks about its client and its HELO argument several
    times (the objects are immutable)."""
    try:
        ip = ipaddress.ip_address(str(text).strip().strip("[]"))
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped:
        return ip.ipv4_mapped
    return ip


@functools.lru_cache(maxsize=4096)
def _ip_facts(ip):
    """(normalised text, ip_address or None, octet prefixes) of a client IP; cached
    because every connection asks several lists about the same address."""
    text = ip.lower()
    parsed = parse_ip(text)
    if parsed is not None:
        text = str(parsed)
    return text, parsed, tuple(ip_prefixes(text))


class IPList:
    """Membership test for a list of IPs, prefixes and CIDR blocks."""

    def __init__(self, entries=()):
        self.exact = {}
        self.networks = []
        for entry in entries:
            self.add(entry)

    def add(self, entry, value=True):
        text = str(entry).split()[0] if str(entry).split() else ""
        if not text:
            return
        if "/" in text:
            try:
                self.networks.append((ipaddress.ip_network(text, strict=False), value))
                return
            except ValueError:
                pass
        parsed = parse_ip(text)
        if parsed is not None:              # any spelling of one address
            self.exact[str(parsed)] = value
            return
        network = v6_prefix_network(text)
        if network is not None:
            self.networks.append((network, value))
            return
        self.exact[text.lower()] = value

    def lookup(self, ip):
        """The value stored for the first entry matching `ip`, else None."""
        if not self.exact and not self.networks:
            return None
        _text, parsed, prefixes = _ip_facts(str(ip))
        for candidate in prefixes:
            if candidate in self.exact:
                return self.exact[candidate]
        if parsed is not None:
            for network, value in self.networks:
                if parsed.version == network.version and parsed in network:
                    return value
        return None

    def __contains__(self, ip):
        return self.lookup(ip) is not None


_CACHED = {}


def cached_iplist(lines):
    """The IPList of these config lines, built once per distinct content (the
    relay plugin asks on every connection)."""
    key = tuple(lines)
    found = _CACHED.get(key)
    if found is None:
        if len(_CACHED) > 64:
            _CACHED.clear()
        found = _CACHED[key] = IPList(key)
    return found
