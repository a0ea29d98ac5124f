"""A reader for D. J. Bernstein's cdb files (qmail's morercpthosts.cdb etc.).

No maintained cdb package exists on PyPI, and the format is small: a 2048-byte
table of 256 (position, slots) pairs, then records, then hash tables.
"""

import struct

_PAIR = struct.Struct("<II")


def cdb_hash(key: bytes) -> int:
    h = 5381
    for byte in key:
        h = ((h << 5) + h) & 0xFFFFFFFF ^ byte
    return h


class CDB:
    """Random access to one cdb file; the whole file is read into memory once."""

    def __init__(self, path):
        with open(path, "rb") as fh:
            self.data = fh.read()
        if len(self.data) < 2048:
            raise ValueError(f"{path}: not a cdb file (shorter than its 2048-byte header)")
        self.path = path

    def get_all(self, key):
        if isinstance(key, str):
            key = key.encode("utf-8", "surrogateescape")
        h = cdb_hash(key)
        table_pos, slots = _PAIR.unpack_from(self.data, (h & 0xFF) * 8)
        if not slots:
            return []
        found = []
        slot = (h >> 8) % slots
        for _ in range(slots):
            slot_hash, record_pos = _PAIR.unpack_from(self.data, table_pos + slot * 8)
            if record_pos == 0:
                break
            if slot_hash == h:
                klen, vlen = _PAIR.unpack_from(self.data, record_pos)
                start = record_pos + 8
                if self.data[start:start + klen] == key:
                    found.append(self.data[start + klen:start + klen + vlen])
            slot = (slot + 1) % slots
        return found

    def get(self, key, default=None):
        values = self.get_all(key)
        return values[0] if values else default

    def __contains__(self, key):
        return bool(self.get_all(key))

    def keys(self):
        """Every key in file order (records run from 2048 to the first table)."""
        end = min(_PAIR.unpack_from(self.data, i * 8)[0] for i in range(256))
        pos = 2048
        while pos < end:
            klen, vlen = _PAIR.unpack_from(self.data, pos)
            yield self.data[pos + 8:pos + 8 + klen]
            pos += 8 + klen + vlen


def write_cdb(path, items):
    """Write (key, value) byte pairs as a cdb file: used by tests and tools."""
    records = bytearray(b"\0" * 2048)
    buckets = [[] for _ in range(256)]
    for key, value in items:
        key = key.encode() if isinstance(key, str) else key
        value = value.encode() if isinstance(value, str) else value
        h = cdb_hash(key)
        buckets[h & 0xFF].append((h, len(records)))
        records += _PAIR.pack(len(key), len(value)) + key + value
    header = bytearray()
    tables = bytearray()
    base = len(records)
    for bucket in buckets:
        slots = len(bucket) * 2
        header += _PAIR.pack(base + len(tables), slots)
        table = [(0, 0)] * slots
        for h, pos in bucket:
            i = (h >> 8) % slots
            while table[i][1]:
                i = (i + 1) % slots
            table[i] = (h, pos)
        for h, pos in table:
            tables += _PAIR.pack(h, pos)
    records[:2048] = header
    with open(path, "wb") as fh:
        fh.write(records + tables)
