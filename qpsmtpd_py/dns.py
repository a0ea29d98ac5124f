"""One DNS resolver (dnspython) for every plugin that looks things up.

Config files:
  dns_servers   one server a line, `ip` or `ip:port` (`[v6]:port` for IPv6 with a
                port); default: the nameservers of /etc/resolv.conf
  dns_timeout   seconds for one whole lookup (default 5)

The resolver is created per process on first use (after fork) and again when the
config changes. Lookups return plain strings; "no such name" and "no data" are an
empty list; a time-out or a server failure raises DNSFailure, so a plugin can
apply its documented policy (usually: temporary failure or skip, never accept
by accident).
"""

import ipaddress
import os

import dns.exception
import dns.nameserver
import dns.resolver
import dns.reversename


class DNSFailure(Exception):
    """The answer is unknown (time-out, SERVFAIL, no server reachable)."""


def parse_server(line):
    """'1.2.3.4', '1.2.3.4:5353', '[::1]:53', '::1' -> (ip, port)."""
    text = line.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest.lstrip(":") or 53)
        return host, port
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, int(port)
    ipaddress.ip_address(text)
    return text, 53


class Resolver:
    """A configured dnspython resolver with the calls plugins need."""

    def __init__(self, servers=None, timeout=5.0):
        if servers:
            self._resolver = dns.resolver.Resolver(configure=False)
            self._resolver.nameservers = [dns.nameserver.Do53Nameserver(ip, port) for ip, port in servers]
        else:
            self._resolver = dns.resolver.Resolver()
        self._resolver.lifetime = timeout
        self._resolver.timeout = timeout
        self._resolver.cache = dns.resolver.LRUCache(2000)
        self.timeout = timeout

    def query(self, name, rdtype="A"):
        """Answers as text ([] for NXDOMAIN / no data); DNSFailure when unknown."""
        try:
            answer = self._resolver.resolve(name, rdtype, raise_on_no_answer=False, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoNameservers) as exc:
            if isinstance(exc, dns.resolver.NXDOMAIN):
                return []
            raise DNSFailure(f"{name}/{rdtype}: {exc}")
        except (dns.exception.Timeout, dns.resolver.LifetimeTimeout) as exc:
            raise DNSFailure(f"{name}/{rdtype}: time-out ({exc})")
        except dns.exception.DNSException as exc:
            raise DNSFailure(f"{name}/{rdtype}: {exc}")
        if answer.rrset is None:
            return []
        out = []
        for rdata in answer.rrset:
            if rdtype.upper() == "TXT":
                out.append(b"".join(rdata.strings).decode("utf-8", "replace"))
            elif rdtype.upper() in ("PTR", "CNAME", "NS"):
                out.append(rdata.target.to_text(omit_final_dot=True))
            elif rdtype.upper() == "MX":
                out.append(f"{rdata.preference} {rdata.exchange.to_text(omit_final_dot=True)}")
            else:
                out.append(rdata.to_text())
        return out

    def ptr(self, ip):
        """Host names of `ip` (reverse lookup)."""
        return self.query(dns.reversename.from_address(ip).to_text(), "PTR")

    def addresses(self, name):
        """A and AAAA records of `name`."""
        found = []
        failure = None
        for rdtype in ("A", "AAAA"):
            try:
                found += self.query(name, rdtype)
            except DNSFailure as exc:
                failure = exc
        if not found and failure:
            raise failure
        return found


_cache = {"pid": None, "key": None, "resolver": None}


def resolver_for(app):
    """The process's resolver for `app`'s config (rebuilt after fork or a change)."""
    servers = tuple(parse_server(line) for line in app.config.get_list("dns_servers"))
    timeout = float(app.config.get("dns_timeout", "5"))
    key = (servers, timeout)
    if _cache["pid"] != os.getpid() or _cache["key"] != key:
        _cache.update(pid=os.getpid(), key=key, resolver=Resolver(list(servers), timeout))
    return _cache["resolver"]


def reverse_name(app, ip):
    """The first PTR name of `ip`, or None (also on failure)."""
    try:
        names = resolver_for(app).ptr(ip)
    except (DNSFailure, ValueError):
        return None
    return names[0] if names else None
