"""Token buckets in the shared store, for berkeley_ipblacklist (which reads them),
berkeley_tokenbucketadd (which takes tokens when a client misbehaves) and
berkeley_operation (the admin tool).

A bucket holds up to `size` tokens and refills at `rate` tokens per second. Each
event takes one; an empty bucket means the client misbehaved faster than `rate`
for long enough to use up a burst of `size`. The state is one store value,
"tokens:ts" (tokens left at time ts), changed only in an atomic update, so 50
children taking tokens at once lose none. With `tokenbucketx2` there are two
buckets per IP (a short burst and a long-term rate): "t1:ts1:t2:ts2".
"""


def _fields(value, count):
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value or "")
    out = []
    for part in text.split(":")[:count]:
        try:
            out.append(float(part))
        except ValueError:
            out.append(0.0)
    return out


def level(value, now, buckets):
    """Tokens in each bucket now: buckets = ((rate, size), ...)."""
    if value is None:
        return [float(size) for _, size in buckets]
    fields = _fields(value, 2 * len(buckets))
    out = []
    for i, (rate, size) in enumerate(buckets):
        if 2 * i + 1 >= len(fields):
            out.append(float(size))
            continue
        tokens, ts = fields[2 * i], fields[2 * i + 1]
        out.append(min(float(size), tokens + max(0.0, now - ts) * rate))
    return out


def take(value, now, buckets, n=1.0):
    """An update function's result: n tokens taken from every bucket (never below
    zero), with a TTL for when all are full again (then the entry means nothing)."""
    tokens = [max(0.0, t - n) for t in level(value, now, buckets)]
    ttl = max(((size - t) / rate if rate > 0 else 86400 * 365) for t, (rate, size)
              in zip(tokens, buckets)) + 1
    text = ":".join(f"{t:.6g}:{now:.3f}" for t in tokens)
    return text, ttl


def empty(value, now, buckets):
    """True when some bucket has less than one token: the client is blacklisted."""
    return value is not None and any(t < 1.0 for t in level(value, now, buckets))


# -- what the berkeley_* plugins and berkeley_operation share ---------------------------------
import os as _os
import re as _re

from ..arguments import Choice, Keyword, Number, Text

DEFAULT_FILE = "ipblacklist"
DEFAULT_RATE, DEFAULT_SIZE = 0.1, 10.0          # one token per 10 s, bursts of 10
DEFAULT_RATE2, DEFAULT_SIZE2 = 0.001, 100.0     # x2: 100 events, one back per 1000 s


def table_name(filename):
    """qpsmtpd's BerkeleyDB file name -> the store table: its base name, so the
    plugins and berkeley_operation naming one file share one table."""
    base = _os.path.basename(str(filename or DEFAULT_FILE).rstrip("/")) or DEFAULT_FILE
    return "berkeley_" + _re.sub(r"[^A-Za-z0-9_.-]", "_", base)


def buckets(args, method):
    """((rate, size), ...) of a method: tokenbucket one, tokenbucketx2 two."""
    first = ((args["rate"], args["size"]),)
    if method == "tokenbucketx2":
        return first + ((args["rate2"], args["size2"]),)
    return first


ARGUMENTS = (
    Keyword("filename", Text(what="a file name"), DEFAULT_FILE,
            "qpsmtpd's BerkeleyDB file: its base name names the store table the plugins share"),
    Keyword("type", Choice("btree", "hash"), "btree", "ignored (BerkeleyDB's access method)"),
    Keyword("rate", Number(min=0, unit="tokens per second"), DEFAULT_RATE,
            "refill rate of the (first) token bucket"),
    Keyword("size", Number(min=1, unit="tokens"), DEFAULT_SIZE, "size of the (first) bucket"),
    Keyword("rate2", Number(min=0, unit="tokens per second"), DEFAULT_RATE2,
            "tokenbucketx2: refill rate of the second bucket"),
    Keyword("size2", Number(min=1, unit="tokens"), DEFAULT_SIZE2,
            "tokenbucketx2: size of the second bucket"),
)
IGNORE_NOTE = "berkeley_ipblacklist_ignore"
