"""dkimpy, made cheaper per message without changing what it computes.

Verifying one signature, dkimpy (1.1) parses the signer's public key twice (our
plugin reads its size, then verify_sig parses it again) and converts the RSA
numbers to and from bytes one byte at a time in Python. In bench/full_chain.py's
profile these were a third of the DKIM plugin's time. `speed_up(dkim)` replaces:

* `dkim.crypto.int2str` / `str2int` with int.to_bytes / int.from_bytes (same
  results: t/test_dkimspeed.py checks them against dkimpy's own on random numbers);
* `dkim.evaluate_pk` with a cached one: the same (name, record) gives the same
  parsed key (the record text is the key, so a rotated key is parsed afresh).

Applied once per process, by the dkim plugin when it loads.
"""

import functools

KEYS_CACHED = 256


def int2str(n, length=-1):
    """`n` as big-endian bytes, at least one, exactly `length` when given."""
    assert n >= 0
    if length < 0:
        length = max(1, (n.bit_length() + 7) // 8)
    return bytearray(n.to_bytes(length, "big"))


def str2int(data):
    """Big-endian bytes as a non-negative integer."""
    return int.from_bytes(bytes(data), "big")


def speed_up(dkim):
    """Patch the imported `dkim` module (idempotent); returns it."""
    if getattr(dkim, "_qpsmtpd_speed", False):
        return dkim
    dkim.crypto.int2str = int2str
    dkim.crypto.str2int = str2int
    dkim.evaluate_pk = functools.lru_cache(KEYS_CACHED)(dkim.evaluate_pk)
    dkim._qpsmtpd_speed = True
    return dkim
