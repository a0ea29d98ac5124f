"""connection_shaper - limit the connection rate of each client IP.

A client may connect `threshold` times per `exptime` seconds; further connections
in that window are refused at pre-connection, before the greeting, DNS lookups or
any other plugin: `451 Sorry, try again later` and the connection is closed, so a
hammering client costs a worker well under a millisecond. The counters live in the
shared store (docs/store.md, table `connection_shaper`; LMDB, or Redis for several
MX hosts) instead of memcached, so every worker process (and host) counts the same
connections, and no count is lost when 50 arrive at once.

config/connection_shaper (re-read when it changes), `key value` lines:
  exptime 60          the window, seconds (default 60)
  threshold 10        connections allowed per window (default 10)
  whitelist 192.168.1., 10.0.0.0/8   never limited: comma-separated IP prefixes
                      (as qpsmtpd wrote them, a string prefix of the address) or
                      CIDR networks
  memcached_server, memcached_port   accepted and ignored (the store replaces memcached)
Arguments: exptime N, threshold N and whitelist LIST override the file.

The window is fixed: it starts with a client's first connection and counts until
exptime has passed (memcached's add + incr, as qpsmtpd's plugin did). If the store
fails (Redis down ...) connections are not limited and an error is logged.
Durability: the LMDB store fsyncs its commits within a second (store_sync 1s, the
default since 2026-12-04; docs/store.md): a crash of a process or of the server
loses nothing, a power failure at most about the last second of connection counts.

Hooks: pre-connection (qpsmtpd-prefork and qpsmtpd-forkserver; `qpsmtpd` under
inetd has no pre-connection: use the super-server's own rate limits).
Example config/plugins line:  connection_shaper
"""

import ipaddress

from qpsmtpd_py.api import (
    DECLINED, DENYSOFT, LOGERROR, LOGINFO, LOGNOTICE, Int, Keyword, Number, Plugin, StoreError,
    Text, check_store,
)

TABLE = "connection_shaper"
KEYS = ("exptime", "threshold", "whitelist", "memcached_server", "memcached_port")


def parse_whitelist(text):
    """'192.168.1., 10.0.0.0/8' -> (prefixes, networks)."""
    prefixes, networks = [], []
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        if "/" in item:
            networks.append(ipaddress.ip_network(item, strict=False))
        else:
            prefixes.append(item)
    return tuple(prefixes), tuple(networks)


def count_one(old, now, exptime):
    """The window update: 'start:count' -> (new value, ttl)."""
    if old is not None:
        start, _, count = old.decode().partition(":")
        try:
            start, count = float(start), int(count)
        except ValueError:
            start, count = now, 0
        if now - start < exptime:
            return f"{start:.3f}:{count + 1}", max(1.0, start + exptime - now)
    return f"{now:.3f}:1", exptime


class ConnectionShaper(Plugin):
    arguments = (
        Keyword("exptime", Number(min=1, unit="seconds"), None, "the window (file: exptime)"),
        Keyword("threshold", Int(min=1), None, "connections per window (file: threshold)"),
        Keyword("whitelist", Text(what="comma-separated prefixes"), None, "never limited"),
    )

    def register(self, *args):
        for line in self.config_list("connection_shaper"):
            key = str(line).split(None, 1)[0] if str(line).split() else ""
            if key and not key.startswith("#") and key not in KEYS:
                raise ValueError(f"{line.origin}: unknown key '{key}' (known: {', '.join(KEYS)})")
        self.settings()                       # a bad value stops start-up too
        check_store(self.app, TABLE)

    def parse(self, lines):
        values = {"exptime": "60", "threshold": "10", "whitelist": ""}
        for line in lines:
            parts = str(line).split(None, 1)
            if len(parts) == 2 and parts[0] in KEYS:
                values[parts[0]] = parts[1].strip()
        for name in ("memcached_server", "memcached_port"):
            if name in values:
                self.log(LOGNOTICE, f"{name} is ignored: the counters live in the shared store")
        try:
            return (float(values["exptime"]), int(values["threshold"]),
                    parse_whitelist(values["whitelist"]))
        except ValueError as exc:
            raise ValueError(f"config/connection_shaper: {exc}") from None

    def settings(self):
        exptime, threshold, whitelist = self.parsed_config("connection_shaper", self.parse)
        args = self.args
        if args["exptime"] is not None:
            exptime = args["exptime"]
        if args["threshold"] is not None:
            threshold = args["threshold"]
        if args["whitelist"] is not None:
            whitelist = parse_whitelist(args["whitelist"])
        return exptime, threshold, whitelist

    def hook_pre_connection(self, transaction, args):
        ip = str(args.get("remote_ip") or "")
        try:
            exptime, threshold, (prefixes, networks) = self.settings()
        except ValueError as exc:
            self.log(LOGERROR, f"{exc}; not limiting")
            return DECLINED
        if any(ip.startswith(p) for p in prefixes) or self.in_networks(ip, networks):
            self.log(LOGINFO, f"skip, {ip} whitelisted")
            return DECLINED
        now = self.app.clock.time()
        try:
            value = self.store.table(TABLE).update(ip, lambda old: count_one(old, now, exptime))
        except (StoreError, OSError) as exc:
            self.log(LOGERROR, f"error, store: {exc} (no rate limit)")
            return DECLINED
        count = int(value.split(b":")[1])
        if count > threshold:
            self.log(LOGINFO, f"fail, exceeds the threshold from {ip} ({count} > {threshold} "
                              f"in {exptime:g}s)")
            return DENYSOFT
        return DECLINED

    @staticmethod
    def in_networks(ip, networks):
        if not networks:
            return False
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr.version == n.version and addr in n for n in networks)
