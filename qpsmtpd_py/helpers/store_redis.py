"""The shared store on Redis: the same tables as the LMDB store (store.py), shared by
several MX hosts.

A plugin never knows which backend it has: `open_store(app).table("greylist")`
returns a table with get/set/delete/incr/update/items/entries/expire on either.
Config `store_backend redis` chooses this one (docs/store.md).

Semantics kept equal to LMDB:
  * updates are atomic: `incr` is one Lua script, `update(key, func)` reads the key,
    runs func in Python and stores the result with a Lua compare-and-set that
    succeeds only if the key still holds what was read (else it reads again), so
    50 children on two hosts lose no update; two round trips per update;
  * every key has a TTL: the one the plugin gives, else `store_redis_ttl`
    (default 180 days), so Redis never fills with forgotten entries;
  * a Redis outage raises StoreUnavailable (a StoreError) at once: after a failed
    call the backend waits (back-off 0.5 s doubling to 30 s) before it tries to
    connect again, so an outage costs each session nothing but the error, and
    plugins degrade ("no greylisting", "no rate limit") instead of refusing mail.

Keys are `<prefix><table>:<key>` (prefix `store_redis_prefix`, default `qpsmtpd:`),
values the plugin's bytes as they are; expiry is Redis's own.
"""

import os
import re

from ..clock import SYSTEM_CLOCK
from .store import StoreError, _bytes, _with_ttl

DEFAULT_PREFIX = "qpsmtpd:"
DEFAULT_TTL = 180 * 86400          # for keys stored without one
DEFAULT_TIMEOUT = 1.0              # connect and reply, seconds
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 30.0
BATCH = 1000

# incr: the TTL applies when the counter is created (a fixed window, as in LMDB)
_INCR = """
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return v
"""
# update: compare-and-set. ARGV: had_value (0/1), old value, new value or '' with
# delete=1, ttl ms or '' (keep the old TTL), delete flag, default ttl ms. Returns 1 when
# the key still held what the client read (then it is changed), else 0 (read again).
_CAS = """
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == '0' then
  if cur then return 0 end
elseif cur ~= ARGV[2] then
  return 0
end
if ARGV[5] == '1' then
  redis.call('DEL', KEYS[1])
elseif ARGV[4] ~= '' then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
else
  redis.call('SET', KEYS[1], ARGV[3], 'KEEPTTL')
  if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[6]) end
end
return 1
"""


class StoreUnavailable(StoreError):
    """The Redis server cannot be reached now; plugins carry on without the store."""


def _import_redis():
    try:
        import redis
    except ImportError:
        raise StoreError("store_backend redis needs the Python package redis: "
                         "pip install 'qpsmtpd_py[redis]'") from None
    return redis


def parse_address(text):
    """'host[:port][/db]', 'redis://host:port/db' or 'unix:/path[?db=N]' ->
    dict of redis.Redis keyword arguments; raises StoreError."""
    text = str(text or "127.0.0.1").strip()
    if text.startswith("redis://"):
        text = text[8:]
    if text.startswith("unix:"):
        path, _, query = text[5:].partition("?")
        db = int(query[3:]) if query.startswith("db=") and query[3:].isdigit() else 0
        return {"unix_socket_path": path, "db": db}
    match = re.fullmatch(r"\[?([^\]/]*?)\]?(?::(\d+))?(?:/(\d+))?", text)
    if not match or not match.group(1):
        raise StoreError(f"store_redis: '{text}' is not host[:port][/db], redis://host:port/db "
                         "or unix:/path")
    return {"host": match.group(1), "port": int(match.group(2) or 6379),
            "db": int(match.group(3) or 0)}


def _glob_escape(data):
    return re.sub(rb"([*?\[\]\\])", rb"\\\1", data)


class RedisStore:
    """Tables on one Redis server (database); one connection per process, made on
    first use and again after fork."""

    backend = "redis"

    def __init__(self, address="127.0.0.1:6379", prefix=DEFAULT_PREFIX, timeout=DEFAULT_TIMEOUT,
                 default_ttl=DEFAULT_TTL, clock=SYSTEM_CLOCK, log=None):
        self.redis = _import_redis()
        self.address = str(address)
        self.params = parse_address(address)
        self.prefix = _bytes(prefix, "prefix")
        self.timeout = float(timeout)
        self.default_ttl = float(default_ttl)
        self.clock = clock
        self.log = log                       # log(level, text) for outage / recovery lines
        self.path = f"redis {self.address}"  # what messages and qpsmtpd-store show
        self._client = None
        self._pid = None
        self._incr = None
        self._cas = None
        self._retry_at = 0.0
        self._backoff = 0.0
        self._last_error = None

    # -- the connection, with back-off ------------------------------------------------------
    def client(self):
        if self._client is None or self._pid != os.getpid():
            redis = self.redis
            self._client = redis.Redis(
                **self.params, socket_timeout=self.timeout, socket_connect_timeout=self.timeout,
                retry=redis.retry.Retry(redis.backoff.NoBackoff(), 0), health_check_interval=0)
            self._incr = self._client.register_script(_INCR)
            self._cas = self._client.register_script(_CAS)
            self._pid = os.getpid()
        return self._client

    def call(self, func):
        """func(client) with the outage rules: fail fast during back-off, reset the
        connection after a failure, log once when Redis is back."""
        now = self.clock.monotonic()
        if self._backoff and now < self._retry_at:
            raise StoreUnavailable(f"{self.path} unavailable ({self._last_error}); next try in "
                                   f"{self._retry_at - now:.1f}s")
        try:
            result = func(self.client())
        except (self.redis.ConnectionError, self.redis.TimeoutError, OSError) as exc:
            self._backoff = min(max(self._backoff * 2, BACKOFF_FIRST), BACKOFF_MAX)
            self._retry_at = self.clock.monotonic() + self._backoff
            self._last_error = f"{type(exc).__name__}: {exc}"
            self.close()
            raise StoreUnavailable(f"{self.path} unavailable: {self._last_error}; next try in "
                                   f"{self._backoff:.1f}s") from None
        except self.redis.RedisError as exc:
            raise StoreError(f"{self.path}: {type(exc).__name__}: {exc}") from None
        if self._backoff:
            self._backoff = 0.0
            if self.log:
                self.log(f"{self.path} is reachable again")
        return result

    def close(self):
        client, self._client = self._client, None
        if client is not None and self._pid == os.getpid():
            try:
                client.close()
            except Exception:
                pass

    def _check_dir(self):
        """check_store(): the configuration is usable (the server itself may be down:
        plugins then run without the store)."""

    # -- tables --------------------------------------------------------------------------------
    def table(self, name):
        return RedisTable(self, name)

    def tables(self):
        names = set()

        def scan(client):
            for key in client.scan_iter(match=_glob_escape(self.prefix) + b"*", count=BATCH):
                rest = key[len(self.prefix):]
                if b":" in rest:
                    names.add(rest.split(b":", 1)[0].decode("utf-8", "replace"))
        self.call(scan)
        return sorted(names)

    def expire(self):
        """Redis deletes expired keys itself."""
        return 0

    def ttl_ms(self, ttl):
        return max(1, int(float(self.default_ttl if ttl is None else ttl) * 1000))


class RedisTable:
    """A table on Redis: the LMDB Table's methods and meaning."""

    def __init__(self, store, name):
        name = str(name)
        if not name or "\0" in name or ":" in name or len(name.encode()) > 200:
            raise ValueError(f"bad store table name {name!r}")
        self.store = store
        self.name = name
        self._base = store.prefix + name.encode() + b":"

    def _key(self, key):
        key = _bytes(key, "key")
        if not key or len(key) > 511:
            raise ValueError(f"store key must be 1-511 bytes, got {len(key)}")
        return self._base + key

    def get(self, key, default=None):
        key = self._key(key)
        value = self.store.call(lambda c: c.get(key))
        return default if value is None else value

    def set(self, key, value, ttl=None):
        key, value = self._key(key), _bytes(value)
        self.store.call(lambda c: c.set(key, value, px=self.store.ttl_ms(ttl)))

    def delete(self, key):
        key = self._key(key)
        return bool(self.store.call(lambda c: c.delete(key)))

    def incr(self, key, n=1, ttl=None):
        key = self._key(key)
        ms = self.store.ttl_ms(ttl)
        return int(self.store.call(lambda c: self.store._incr(keys=[key], args=[int(n), ms])))

    def update(self, key, func, ttl=None):
        """Atomic read-modify-write: GET, func in Python, then a Lua compare-and-set
        that applies the result only if the key still holds what was read (else it
        is read again). func may run several times: keep it pure. It returns the new
        value, None (delete) or (value, ttl). As func depends only on the value,
        applying it to the value the key still holds is a correct serial order."""
        key = self._key(key)
        store = self.store

        def attempt(client):
            while True:
                old = client.get(key)
                new, new_ttl = _with_ttl(func(old), ttl)
                if new is not None:
                    new = _bytes(new)
                args = ["0" if old is None else "1", old or b"", new or b"",
                        "" if new_ttl is None else store.ttl_ms(new_ttl),
                        "1" if new is None else "0", store.ttl_ms(None)]
                if store._cas(keys=[key], args=args):
                    return new
        return store.call(attempt)

    def items(self, prefix=b""):
        for key, value, _ in self.entries(prefix):
            yield key, value

    def entries(self, prefix=b""):
        """(key, value, expires_at) of live entries with the prefix, in key order."""
        match = _glob_escape(self._base + _bytes(prefix, "prefix")) + b"*"
        keys = sorted(self.store.call(
            lambda c: list(c.scan_iter(match=match, count=BATCH))))
        cut = len(self._base)
        for i in range(0, len(keys), BATCH):
            batch = keys[i:i + BATCH]

            def read(client):
                pipe = client.pipeline(transaction=False)
                for key in batch:
                    pipe.get(key)
                    pipe.pttl(key)
                return pipe.execute()
            answers = self.store.call(read)
            now = self.store.clock.time()
            for n, key in enumerate(batch):
                value, pttl = answers[2 * n], answers[2 * n + 1]
                if value is None:
                    continue
                yield key[cut:], value, (now + pttl / 1000.0 if pttl and pttl > 0 else None)

    def expire(self):
        return 0
