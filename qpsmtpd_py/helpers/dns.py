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

Several lookups can be in flight at once: `submit()` starts one on a small pool
of threads (MAX_THREADS per process, at most MAX_PENDING waiting) and returns a
Pending; `result(timeout)` collects it later. A plugin starts its list lookups
at connect and reads them at RCPT, as Postfix's postscreen does, so N list
zones cost one round trip, not N. Plugins reach this through `self.resolver`, a
SessionResolver that keeps the session's answers (docs/plugin-api.md).
"""

import concurrent.futures
import functools
import concurrent.futures.thread  # noqa: F401  imported now: after --user it may be unreadable
import hashlib
import ipaddress
import mmap
import os
import struct
import threading
import time

import dns.exception
import dns.name
import dns.nameserver
import dns.rdataclass
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.reversename

from .. import metrics


class DNSFailure(Exception):
    """The answer is unknown (time-out, SERVFAIL, no server reachable)."""


class DNSTimeout(DNSFailure):
    """No answer in time (the server may be down or not answering)."""


class Answers(list):
    """The answers of a lookup as text (a list); `nxdomain` is True when the name
    does not exist at all (an empty list with nxdomain False: the name exists but
    has no record of that type)."""

    nxdomain = False

    @classmethod
    def of(cls, items, nxdomain=False):
        answers = cls(items)
        answers.nxdomain = nxdomain
        return answers


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


MAX_THREADS = 32         # lookups running at once in one process (a session with
                         # 20 list zones, or uribl with its hosts, in one round trip)
MAX_PENDING = 256        # submitted but not finished; more is refused (DNSFailure)


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
        self.servers = tuple(servers or ())   # as configured ((ip, port), ...); () = resolv.conf
        self._pool = None            # (pid, ThreadPoolExecutor), made on first submit()
        self._lock = threading.Lock()
        self._pending = 0

    def query(self, name, rdtype="A", timeout=None):
        """Answers as text, an Answers list ([] for NXDOMAIN / no data; .nxdomain
        tells them apart); DNSFailure when unknown.
        `timeout` (seconds, default dns_timeout) bounds the whole lookup."""
        lifetime = self.timeout if timeout is None else float(timeout)
        if lifetime <= 0:
            raise DNSTimeout(f"{name}/{rdtype}: time-out (no time left)")
        try:
            answer = self._resolver.resolve(name, rdtype, raise_on_no_answer=False, search=False,
                                            lifetime=lifetime)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoNameservers) as exc:
            if isinstance(exc, dns.resolver.NXDOMAIN):
                return Answers.of([], nxdomain=True)
            raise DNSFailure(f"{name}/{rdtype}: {exc}")
        except (dns.exception.Timeout, dns.resolver.LifetimeTimeout) as exc:
            raise DNSTimeout(f"{name}/{rdtype}: time-out ({exc})")
        except dns.exception.DNSException as exc:
            raise DNSFailure(f"{name}/{rdtype}: {exc}")
        return _texts(answer.rrset, rdtype)

    def cached(self, name, rdtype="A"):
        """The answers when the process's cache holds them, else None: such a lookup
        needs no thread. Negative answers count (dnspython keeps them for the zone's
        negative TTL): no records of that type ([]), or no such name ([] with
        .nxdomain), as query() returns them. A name not on a DNS list is the common
        answer, one or more per message."""
        try:
            key = _cache_key(name, rdtype)
        except dns.exception.DNSException:
            return None
        cache = self._resolver.cache
        answer = cache.get(key)
        if answer is not None:
            return _texts(answer.rrset, rdtype)
        missing = cache.get((key[0], dns.rdatatype.ANY, key[2]))   # how dnspython keeps NXDOMAIN
        if missing is not None and missing.response.rcode() == dns.rcode.NXDOMAIN:
            return Answers.of([], nxdomain=True)
        return None

    def expiration(self, name, rdtype="A"):
        """When the process's cached answer for (name, type) expires (time.time()
        seconds), or None when nothing is cached."""
        try:
            answer = self._resolver.cache.get(_cache_key(name, rdtype))
        except dns.exception.DNSException:
            return None
        return None if answer is None else answer.expiration

    def submit(self, name, rdtype="A", timeout=None):
        """Start a lookup and return at once; `Pending.result()` collects it. The
        lookup ends `timeout` seconds (default dns_timeout) after this call, even
        when it had to wait for a free thread. A cached answer comes back done."""
        found = self.cached(name, rdtype)
        if found is not None:
            return Pending.answered(name, rdtype, found)
        lifetime = self.timeout if timeout is None else float(timeout)
        deadline = time.monotonic() + lifetime
        executor = self._executor()
        with self._lock:
            if self._pending >= MAX_PENDING:
                return Pending.failed(name, rdtype, "too many lookups in flight")
            self._pending += 1
        try:
            future = executor.submit(self._run, name, rdtype, deadline)
        except RuntimeError as exc:          # interpreter shutting down
            self._finished(None)
            return Pending.failed(name, rdtype, str(exc))
        future.add_done_callback(self._finished)
        return Pending(future, name, rdtype, deadline)

    def _run(self, name, rdtype, deadline):
        started = time.monotonic()
        try:
            return self.query(name, rdtype, timeout=deadline - time.monotonic())
        finally:        # --metrics-listen: how long our DNS servers take
            metrics.observe("qpsmtpd_dns_seconds", time.monotonic() - started, {"type": rdtype})

    def _finished(self, _future):
        with self._lock:
            self._pending -= 1

    def _executor(self):
        """The thread pool of this process (threads do not survive fork)."""
        pid = os.getpid()
        if self._pool is None or self._pool[0] != pid:
            self._lock = threading.Lock()
            self._pending = 0
            self._pool = (pid, concurrent.futures.ThreadPoolExecutor(
                MAX_THREADS, thread_name_prefix="dns"))
        return self._pool[1]

    def ptr(self, ip, timeout=None):
        """Host names of `ip` (reverse lookup)."""
        return self.query(dns.reversename.from_address(ip).to_text(), "PTR", timeout)

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


@functools.lru_cache(4096)
def _cache_key(name, rdtype):
    """dnspython's cache key for (name, type); names repeat (clients, zones)."""
    return dns.name.from_text(name), dns.rdatatype.from_text(rdtype), dns.rdataclass.IN


@functools.lru_cache(4096)
def ptr_name(ip):
    """'1.2.3.4' -> '4.3.2.1.in-addr.arpa.' (IPv6: nibbles under ip6.arpa.); a
    client address repeats, so the parse is done once per process."""
    return dns.reversename.from_address(ip).to_text()


def _texts(rrset, rdtype):
    """An rrset as an Answers list of text."""
    out = Answers()
    if rrset is None:
        return out
    kind = rdtype.upper()
    for rdata in rrset:
        if kind == "TXT":
            out.append(b"".join(rdata.strings).decode("utf-8", "replace"))
        elif kind in ("PTR", "CNAME", "NS"):
            out.append(rdata.target.to_text(omit_final_dot=True))
        elif kind == "MX":
            out.append(f"{rdata.preference} {rdata.exchange.to_text(omit_final_dot=True)}")
        else:
            out.append(rdata.to_text())
    return out


class Pending:
    """A lookup in flight (Resolver.submit). result() waits for it, never past the
    lookup's own deadline, and returns the answers or raises DNSFailure."""

    def __init__(self, future, name, rdtype, deadline):
        self.name, self.rdtype = name, rdtype
        self._future = future
        self._deadline = deadline

    @classmethod
    def failed(cls, name, rdtype, reason, error=DNSFailure):
        return cls(_Settled(error=error(f"{name}/{rdtype}: {reason}")), name, rdtype, 0.0)

    @classmethod
    def answered(cls, name, rdtype, answers):
        return cls(_Settled(answers), name, rdtype, 0.0)

    def done(self):
        """True once the answer (or the failure) is known."""
        return self._future.done()

    def add_done_callback(self, func):
        """func(future) once the lookup has ended (at once if it has)."""
        self._future.add_done_callback(func)

    def failed_lookup(self):
        """True when the lookup has ended, or is past its deadline, without an answer."""
        if self._future.done():
            return self._future.exception() is not None
        return time.monotonic() > self._deadline

    def result(self, timeout=None):
        """The answers; waits at most `timeout` seconds (None: until the lookup's
        deadline). DNSFailure on a time-out or a server failure."""
        wait = max(0.0, self._deadline - time.monotonic()) + 0.05
        if timeout is not None:
            wait = min(wait, max(0.0, float(timeout)))
        try:
            found = self._future.result(wait)
            return Answers.of(found, getattr(found, "nxdomain", False))
        except concurrent.futures.TimeoutError:
            raise DNSTimeout(f"{self.name}/{self.rdtype}: time-out")


class _Settled:
    """A future that is done from the start (a cached answer, a failure known at
    once): what Pending needs of concurrent.futures.Future without its lock and
    condition, which cost more than the cached lookup itself."""

    __slots__ = ("_result", "_error")

    def __init__(self, result=None, error=None):
        self._result, self._error = result, error

    def done(self):
        return True

    def exception(self, timeout=None):
        return self._error

    def result(self, timeout=None):
        if self._error is not None:
            raise self._error
        return self._result

    def add_done_callback(self, func):
        func(self)


def reverse_ip(ip):
    """The label order list zones use: '1.2.3.4' -> '4.3.2.1'; IPv6 in nibble form
    ('2001:db8::1' -> '1.0.0.0.<...>.8.b.d.0.1.0.0.2', 32 labels); an IPv4-mapped
    IPv6 address ('::ffff:1.2.3.4') is treated as its IPv4 address. Append the
    zone: f"{reverse_ip(ip)}.zen.example"."""
    address = ipaddress.ip_address(str(ip).strip().strip("[]"))
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    pointer = address.reverse_pointer
    return pointer.rsplit(".", 2)[0]         # drop in-addr.arpa / ip6.arpa


class SessionResolver:
    """What a plugin's `self.resolver` is: the process's Resolver plus this
    session's answers. The same (name, type) asked twice in one session is looked
    up once (also while the first lookup is still in flight); answers and "no such
    name" are kept for the session, failures are not (asking again retries).

    A DNS server that never answers costs a session one dns_timeout, not one per
    lookup: once a lookup of the session has timed out while none has been
    answered, later lookups fail at once (DNSTimeout) instead of waiting again."""

    def __init__(self, resolver):
        self.base = resolver
        self._answers = {}
        self._lock = threading.Lock()        # then() callbacks submit from resolver threads
        self.answered = False                # some lookup of this session got an answer
        self.timed_out = False               # some lookup of this session timed out

    @property
    def silent(self):
        """The server has not answered this session and a lookup timed out."""
        return self.timed_out and not self.answered

    def _outcome(self, future):
        error = future.exception()
        if error is None or not isinstance(error, DNSFailure):
            self.answered = True
        elif isinstance(error, DNSTimeout):
            self.timed_out = True

    @property
    def timeout(self):
        return self.base.timeout

    def submit(self, name, rdtype="A", timeout=None):
        """Start a lookup now, collect it later: `pending.result(timeout)`."""
        key = (str(name).lower().rstrip("."), rdtype.upper())
        with self._lock:
            pending = self._answers.get(key)
            if pending is not None and not pending.failed_lookup():
                return pending
            if pending is not None and not pending.done():
                self.timed_out = True        # past its deadline, still unanswered
            if self.silent:
                return Pending.failed(name, rdtype, "time-out (the DNS server has not answered "
                                      "this session)", DNSTimeout)
            pending = self._answers[key] = self.base.submit(name, rdtype, timeout)
        pending.add_done_callback(self._outcome)
        return pending

    def submit_ptr(self, ip, timeout=None):
        """Start the reverse lookup of `ip` (shared with ptr() and the engine's);
        ValueError when `ip` is not an IP address."""
        try:
            name = ptr_name(str(ip).strip("[]"))
        except dns.exception.DNSException as exc:
            raise ValueError(f"not an IP address: {ip!r}") from exc
        outcome = ptr_failures.get(self.base.servers, str(ip))
        if outcome == NegativeCache.NO_NAME:
            return Pending.answered(name, "PTR", Answers.of([], nxdomain=True))
        if outcome == NegativeCache.FAILED:
            return Pending.failed(name, "PTR", "no answer a moment ago (negative cache)")
        return self.submit(name, "PTR", timeout)

    def then(self, pending, func):
        """Call func(answers) as soon as `pending` has answered (not after a failure),
        in a resolver thread: for a lookup that depends on another (PTR, then the A
        records of each name) without waiting in a hook. func should only submit()."""
        def done(_future):
            try:
                answers = pending.result(0)
            except DNSFailure:
                return
            func(answers)
        pending.add_done_callback(done)

    def query(self, name, rdtype="A", timeout=None):
        """Look up and wait: answers as text, [] for no such name / no data,
        DNSFailure when unknown (time-out, server failure)."""
        return self.submit(name, rdtype, timeout).result()

    def ptr(self, ip, timeout=None):
        """Host names of `ip` (reverse lookup)."""
        return self.submit_ptr(ip, timeout).result()

    def addresses(self, name, timeout=None):
        """A and AAAA records of `name` (both asked at once)."""
        pendings = [self.submit(name, rdtype, timeout) for rdtype in ("A", "AAAA")]
        found, failure = [], None
        for pending in pendings:
            try:
                found += pending.result()
            except DNSFailure as exc:
                failure = exc
        if not found and failure:
            raise failure
        return found


_cache = {"pid": None, "raw": None, "resolver": None}


def resolver_for(app):
    """The process's resolver for `app`'s config (rebuilt after fork or a change).
    Asked at least once a session: the config lines are parsed only when their
    text changed."""
    config = app.config
    raw = (tuple(config.get_list("dns_servers")), config.get("dns_timeout", "5"))
    pid = os.getpid()
    if _cache["pid"] != pid or _cache["raw"] != raw:
        servers = [parse_server(line) for line in raw[0]]
        _cache.update(pid=pid, raw=raw, resolver=Resolver(servers, float(raw[1])))
    return _cache["resolver"]


def session_resolver(app, connection=None):
    """The SessionResolver of `connection` (kept on it for the session); without a
    connection (pre-connection, register) one without a session cache."""
    resolver = resolver_for(app)
    if connection is None:
        return SessionResolver(resolver)
    view = getattr(connection, "dns", None)
    if view is None or view.base is not resolver:
        view = connection.dns = SessionResolver(resolver)
    return view


PTR_NEGATIVE_TTL = 30.0     # seconds a client address without a PTR name is not asked again


class NegativeCache:
    """Client addresses whose PTR lookup just failed or found no name, shared by every
    process forked from the one that imported this module (a MAP_SHARED page made at
    import, before any fork): a burst of connections from an address without reverse
    DNS, or with no DNS server reachable, costs one lookup per PTR_NEGATIVE_TTL, not
    one per connection. Slots are found by a hash of (DNS servers, address); each is
    written with one slice assignment, and a torn or overwritten slot only costs a
    lookup. The clock is CLOCK_MONOTONIC, the same in every process."""

    SLOTS = 512
    SLOT = struct.Struct("16sdB7x")          # key digest, expiry, outcome

    FAILED, NO_NAME = 1, 2                   # DNSFailure / NXDOMAIN or no PTR record

    def __init__(self):
        self._map = mmap.mmap(-1, self.SLOTS * self.SLOT.size)

    def _slot(self, servers, ip):
        digest = hashlib.blake2b(f"{servers}|{ip}".encode(), digest_size=16).digest()
        return digest, (int.from_bytes(digest[:4], "little") % self.SLOTS) * self.SLOT.size

    def get(self, servers, ip, now=None):
        """FAILED, NO_NAME or None (not cached, or expired)."""
        digest, at = self._slot(servers, ip)
        key, expiry, outcome = self.SLOT.unpack(self._map[at:at + self.SLOT.size])
        if key != digest or expiry <= (time.monotonic() if now is None else now):
            return None
        return outcome

    def put(self, servers, ip, outcome, ttl=PTR_NEGATIVE_TTL, now=None):
        digest, at = self._slot(servers, ip)
        expiry = (time.monotonic() if now is None else now) + ttl
        self._map[at:at + self.SLOT.size] = self.SLOT.pack(digest, expiry, outcome)


ptr_failures = NegativeCache()


_PTR_NAMES = {}              # (DNS servers, ip) -> (expiration, first PTR name) in this process
_PTR_NAMES_MAX = 4096


def reverse_name(app, ip, connection=None):
    """The first PTR name of `ip`, or None (also on failure). With a connection:
    the lookup starts now and a function returns that name, waiting for it.
    A name found before comes back at once until its TTL runs out (_PTR_NAMES:
    the client's own address repeats on every connection, and the full path
    through the resolver's cache costs ~40 us a session).
    An address in the negative cache (ptr_failures) is not looked up again: its
    session gets None at once (no thread, no exception raised), and a plugin's
    submit_ptr (fcrdns, helo) gets the cached outcome (DNSFailure or no name)."""
    resolver = resolver_for(app)
    servers = resolver.servers
    known = _PTR_NAMES.get((servers, ip))
    if known is not None and known[0] > time.time():
        name = known[1]
        return (lambda: name) if connection is not None else name
    view = session_resolver(app, connection)
    if ptr_failures.get(servers, ip) is not None:
        return _none if connection is not None else None
    try:
        pending = view.submit_ptr(ip)
    except ValueError:
        return _none if connection is not None else None

    def record(future):
        error = future.exception()
        if error is not None:
            ptr_failures.put(servers, ip, NegativeCache.FAILED)
        elif not future.result():
            ptr_failures.put(servers, ip, NegativeCache.NO_NAME)
    pending.add_done_callback(record)

    def first_name():
        if not pending.failed_lookup():
            try:
                names = pending.result()
            except DNSFailure:
                pass
            else:
                if names:
                    remember_ptr(resolver, servers, ip, pending.name, names[0])
                return names[0] if names else None
        ptr_failures.put(servers, ip, NegativeCache.FAILED)   # before the thread gives up
        return None
    return first_name if connection is not None else first_name()


def remember_ptr(resolver, servers, ip, reverse, name):
    """Keep `name`, the answer to the PTR query `reverse` (4.3.2.1.in-addr.arpa.),
    for as long as the resolver's cache keeps that answer."""
    expires = resolver.expiration(reverse, "PTR")
    if expires is None:
        return
    if len(_PTR_NAMES) >= _PTR_NAMES_MAX:
        _PTR_NAMES.clear()
    _PTR_NAMES[(servers, ip)] = (expires, name)


def _none():
    return None
