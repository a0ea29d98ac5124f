"""Greylisting's triplets and their states, shared by the greylisting plugin and
`qpsmtpd-store greylist` (list, whitelist, delete).

A triplet key is qpsmtpd's: the client IP as an integer, then the sender and the
recipient when those are part of the triplet, joined by ':' ("3221225994",
"3221225994:a@b.test:u@example.test"). With subnet grouping the integer is that
of the /24 (IPv4) or /64 (IPv6) network with the prefix length appended
("3221225984/24"). The value is qpsmtpd's too: "ts:new:black:white" (first or
last-seen time, 1, deferred attempts, white deliveries).
"""

import functools
import ipaddress

TABLE = "greylist"
CLIENTS = "greylist_clients"      # auto-whitelisting: passes per client (IP or subnet)
SUBNET = {4: 24, 6: 64}

PASS, DEFER = "pass", "defer"


@functools.lru_cache(maxsize=4096)
def client_key(ip, subnet=False):
    """The client part of a key: the IP as an integer, or its /24 or /64 network
    with the prefix length ('3221225984/24'); raises ValueError for a bad IP."""
    addr = ipaddress.ip_address(str(ip).strip())
    if addr.version == 6 and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    if not subnet:
        return str(int(addr))
    bits = SUBNET[addr.version]
    net = ipaddress.ip_network(f"{addr}/{bits}", strict=False)
    return f"{int(net.network_address)}/{bits}"


def triplet_key(ip, sender=None, rcpt=None, use_ip=True, subnet=False):
    """qpsmtpd's key; sender/rcpt are address strings ('' for <>) or None when
    not part of the triplet. None when no part is enabled."""
    parts = []
    if use_ip:
        parts.append(client_key(ip, subnet))
    if sender is not None:
        parts.append(sender.lower())
    if rcpt is not None:
        parts.append(rcpt.lower())
    return ":".join(parts) if parts else None


def show_key(key):
    """A key with its client integer written as an IP, for people."""
    head, sep, rest = key.partition(":")
    num, slash, bits = head.partition("/")
    if num.isdigit():
        value = int(num)
        version = 4 if value < 2 ** 32 and (not bits or bits == "24") else 6
        head = str(ipaddress.ip_address(value) if version == 4 else ipaddress.IPv6Address(value))
        head += f"/{bits}" if slash else ""
    return head + sep + rest


def parse_record(value):
    """'ts:new:black:white' -> 4 ints; missing or bad fields count 0."""
    fields = (value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)).split(":")
    if len(fields) == 4:
        try:                                     # what we write: four integers
            return int(fields[0]), int(fields[1]), int(fields[2]), int(fields[3])
        except ValueError:
            pass
    out = []
    for i in range(4):
        try:
            out.append(int(float(fields[i])))
        except (IndexError, ValueError):
            out.append(0)
    return tuple(out)


def format_record(ts, new, black, white):
    return f"{int(ts)}:{int(new)}:{int(black)}:{int(white)}"


class Decision:
    """What one check of a triplet did: verdict (PASS/DEFER), the log line, and
    whether this pass counts for auto-whitelisting."""

    __slots__ = ("verdict", "message", "counts")

    def __init__(self):
        self.verdict, self.message, self.counts = DEFER, "", False


def step(old, now, black_timeout, grey_timeout, white_timeout, decision):
    """The state machine, as a Table.update function: old record (bytes or None)
    -> (new record, ttl). The TTL lets the store forget a triplet once nothing
    can come of it: a deferred one after grey_timeout, a white one after
    white_timeout without deliveries. `decision` receives the verdict."""
    if old is None:
        decision.verdict, decision.message = DEFER, "fail: initial DENYSOFT, unknown"
        return format_record(now, 1, 0, 0), grey_timeout
    ts, new, black, white = parse_record(old)
    age = now - ts
    if white:
        if age < white_timeout:
            decision.verdict, decision.counts = PASS, True
            decision.message = f"pass: white, {white + 1} deliveries"
            return format_record(now, new, black, white + 1), white_timeout
        decision.verdict, decision.message = DEFER, "fail: white entry timed out, DENYSOFT again"
        return format_record(now, 1, 0, 0), grey_timeout
    if age < black_timeout:
        decision.verdict = DEFER
        decision.message = f"fail: black DENYSOFT - {black + 1} deferred connections"
        return format_record(ts, new, black + 1, 0), max(1.0, ts + grey_timeout - now)
    if age < grey_timeout:
        decision.verdict, decision.counts = PASS, True
        decision.message = "pass: updated grey->white"
        return format_record(now, new, black, 1), white_timeout
    decision.verdict = DEFER
    decision.message = "fail: retried after grey_timeout, DENYSOFT again"
    return format_record(now, 1, 0, 0), grey_timeout
