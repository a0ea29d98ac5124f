"""karma's per-IP records in the shared store, shared by the karma plugin and
`karma_tool` (capture, release, prune, search, list).

Key: the client IP as an integer (qpsmtpd's `intip`, also for IPv6). Value:
qpsmtpd's `penalty_start_ts:naughty:nice:connects`. A penalty start in the future
is qpsmtpd's "penalty box bonus" (a longer sentence for repeat offenders).
"""

import functools
import ipaddress

TABLE = "karma"


@functools.lru_cache(maxsize=4096)
def ip_key(ip):
    """'192.0.2.1' -> '3221225985'; raises ValueError for a bad IP."""
    addr = ipaddress.ip_address(str(ip).strip())
    if addr.version == 6 and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    return str(int(addr))


def key_ip(key):
    """The IP of a key, for people ('3221225985' -> '192.0.2.1')."""
    text = key.decode() if isinstance(key, bytes) else str(key)
    value = int(text)
    return str(ipaddress.IPv4Address(value) if value < 2 ** 32 else ipaddress.IPv6Address(value))


def parse(value):
    """record bytes/str or None -> (penalty_start_ts, naughty, nice, connects) ints."""
    if value is None:
        return 0, 0, 0, 0
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
    fields = text.split(":")
    out = []
    for i in range(4):
        try:
            out.append(int(float(fields[i] or 0)))
        except (IndexError, ValueError):
            out.append(0)
    return tuple(out)


def format(penalty, naughty, nice, connects):
    return f"{int(penalty)}:{int(naughty)}:{int(nice)}:{int(connects)}"


def history(record):
    """nice - naughty: the integer note karma_history."""
    _, naughty, nice, _ = record
    return nice - naughty


def capture(value, now):
    """karma_tool capture: into the penalty box now, one more naughty."""
    penalty, naughty, nice, connects = parse(value)
    return format(now, naughty + 1, nice, connects)


def release(value, now):
    """karma_tool release: out of the penalty box, naughty count cleared."""
    penalty, naughty, nice, connects = parse(value)
    return format(0, 0, nice, connects)
