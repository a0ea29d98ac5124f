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
