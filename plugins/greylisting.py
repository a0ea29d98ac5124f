"""greylisting - delay mail from unknown senders (RFC 6647), also loadable as denysoft_greylist.

A new "triplet" is deferred with a temporary error; a real mail server retries
after a while and gets through, fire-and-forget spamware does not. The triplet is
the client IP by default; the sender and the recipient can be added to it. State
lives in the shared store (docs/store.md: LMDB, or Redis for several MX hosts),
table `greylist`, so every worker process and every host using the same Redis
sees the same triplets, and they survive restarts.

States of a triplet (qpsmtpd's):
  unknown          recorded, DENYSOFT                 "fail: initial DENYSOFT, unknown"
  black            less than black_timeout since first seen: DENYSOFT, the
                   attempt is counted, the first-seen time kept
  grey             retried after black_timeout, within grey_timeout: accepted,
                   the triplet becomes white     "pass: updated grey->white"
  white            accepted while deliveries come at most white_timeout apart
                   (each one renews it)          "pass: white, N deliveries"
A triplet that comes back only after grey_timeout, or a white one silent for
white_timeout, starts over as unknown. The store forgets a triplet when nothing
can come of it any more (TTL grey_timeout resp. white_timeout), so a flood of
unique triplets cannot fill it.

Arguments (also read from config/denysoft_greylist, one `key value` a line; the
plugin line wins). Times are seconds.
  remote_ip 1|0       the client IP is part of the triplet (default 1)
  sender 0|1          the envelope sender is part of it (default 0)
  recipient 0|1       the recipient is part of it; checks then happen at RCPT (default 0)
  per_recipient 0|1   check at RCPT with per-recipient settings: a user_config plugin
                      may answer the file name `denysoft_greylist` for a recipient
                      with `key value` lines that override the global ones (default 0)
  black_timeout N     default 3000 (50 minutes)
  grey_timeout N      default 12000 (3 h 20 min); at least black_timeout
  white_timeout N     default 3110400 (36 days)
  white_refresh N     rewrite a white triplet (renew its time, count the delivery) at most
                      every N seconds (default 60). A delivery within N seconds of the
                      last rewrite passes on what the worker process last saw: it
                      neither reads nor writes the store. So a white triplet expires
                      white_timeout after its last rewrite, at most N seconds before
                      qpsmtpd's would (60 s in 36 days); the delivery count counts
                      rewrites; a triplet deleted with `qpsmtpd-store greylist delete`
                      may still pass for up to N seconds in workers that saw it white.
                      Replies and grey/black timing are unchanged. 0: every delivery
                      rewrites the triplet, as in qpsmtpd (one store write per message,
                      each waiting for the store's single writer lock: the largest
                      cost of the stateful plugins, bench/README.md)
  deny_late 0|1       defer at DATA instead of MAIL (default 0)
  reject 1|0          0: record and log only, never defer (seed the database first)
  mode denysoft|testonly|off   qpsmtpd's older switch: testonly/off = reject 0
                      (only when reject is not given)
  subnet 0|1          group clients postgrey-style: IPv4 by /24, IPv6 by /64, so a
                      pool of outgoing servers retrying from different addresses of
                      one network is one client (default 0: each IP on its own)
  auto_whitelist N    a client (IP, or its subnet) that got through N times skips
                      greylisting for every sender and recipient, as long as it
                      keeps passing within white_timeout (default 0: off). A pass
                      counts when the triplet is written: a white triplet's
                      deliveries count at most once per white_refresh
  p0f KEY,VALUE,...   greylist only clients whose p0f note matches one of: genre
                      (regex), detail, link (regex), uptime (below), distance (above)
  geoip CC,CC         never greylist clients whose geoip_country note is one of these
  redis HOST[:PORT]   keep this plugin's triplets on that Redis server, whatever
                      store_backend says
  db_dir, nfslock, upgrade, per_recipient_db   accepted and ignored, with a notice
                      (the store replaces qpsmtpd's DBM file and its locking)

Not greylisted (logged "skip, ..."): relay clients, whitelisted hosts and senders
(notes whitelisthost, whitelistsender, set by whitelist, dns_whitelist_soft ...),
clients matching greylist_exclude_files, auto-whitelisted clients, and at DATA a
transaction whose every recipient is whitelisted (transaction note
whitelistrcpt counts them).

config/greylist_exclude_files: names of files (relative ones to the config
directory), one a line. Each file holds, one a line (# comments): an IP address,
a host name (matches the client's PTR name and, as in postgrey, any name below it:
`southwest.com` matches `mx1.southwest.com`), or /regex/ for the PTR name.
postgrey's whitelist_clients files work as they are.

Hooks: mail (or rcpt with recipient/per_recipient), data.
Replies: `450 This mail is temporarily denied` at MAIL or RCPT; at DATA (deny_late,
and for the null sender) `451 This mail is temporarily denied`.
Notes: transaction note `greylist` holds the deferred refusal until DATA.

Store: table `greylist`, key qpsmtpd's `intIP[:sender][:rcpt]` (with subnet 1
`intNET/24`), value `ts:new:black:white`; table `greylist_clients` counts passes
for auto_whitelist. `qpsmtpd-store greylist list|whitelist|delete` manages triplets.
If the store fails (Redis down, disk full) the message is NOT greylisted and an
error is logged ("error, store: ... (no greylisting)"): never a refusal or a loss
because of the store.
Durability: the LMDB store fsyncs its commits within a second (store_sync 1s, the
default since 2026-12-04; docs/store.md): a crash of a process or of the server
loses nothing, a power failure at most about the last second of triplet updates (such a
triplet is deferred once more).

Example config/plugins lines:
  greylisting
  greylisting sender 1 recipient 1 black_timeout 300 subnet 1 auto_whitelist 5

Differences from qpsmtpd:
  * A null sender (<>) is always deferred at DATA, never at MAIL (qpsmtpd deferred
    it at MAIL unless checking per recipient), so bounces and sender probes are not
    refused before the recipients are known.
  * A triplet retrying after grey_timeout, or a white one after white_timeout,
    starts over (qpsmtpd 0.94 let it through without whitelisting it).
  * Unknown keys in config/denysoft_greylist stop start-up, naming file and line
    (qpsmtpd logged them and went on).
  * A white triplet is rewritten at most once a minute (white_refresh 60), not on
    every delivery; `white_refresh 0` restores qpsmtpd's rewrite per delivery.
"""

import os
import re

from qpsmtpd_py.api import (
    DECLINED, DENYSOFT, OK, LOGDEBUG, LOGERROR, LOGINFO, LOGNOTICE, LOGWARN, ArgumentError,
    Bool, Choice, Int, Keyword, Number, Plugin, StoreError, Text, check_store, greylist,
    parse_arguments, parse_ip, redis_store,
)

DENYMSG = "This mail is temporarily denied"
WHITE_SEEN_MAX = 10000      # white triplets a worker remembers (white_refresh)
P0F_KEYS = ("genre", "detail", "uptime", "link", "distance")


def _p0f_pairs(text):
    words = [w.strip() for w in text.split(",")]
    if len(words) % 2 or not all(words):
        raise ValueError("expected KEY,VALUE pairs separated by commas")
    pairs = list(zip(words[::2], words[1::2]))
    for key, _ in pairs:
        if key.lower() not in P0F_KEYS:
            raise ValueError(f"'{key}' is not one of {', '.join(P0F_KEYS)}")
    return tuple((k.lower(), v) for k, v in pairs)


def _countries(text):
    return frozenset(c.strip().upper() for c in text.split(",") if c.strip())


SECONDS = Number(min=0, unit="seconds")


class Greylisting(Plugin):
    arguments = (
        Keyword("remote_ip", Bool(), True, "the client IP is part of the triplet"),
        Keyword("sender", Bool(), False, "the envelope sender is part of the triplet"),
        Keyword("recipient", Bool(), False, "the recipient is part of the triplet (checks at RCPT)"),
        Keyword("per_recipient", Bool(), False, "check at RCPT with per-recipient settings"),
        Keyword("black_timeout", SECONDS, 3000.0, "deferral period of a new triplet"),
        Keyword("grey_timeout", SECONDS, 12000.0, "a retry must come within this"),
        Keyword("white_timeout", SECONDS, 3110400.0, "a white triplet lives this long after its "
                "last delivery"),
        Keyword("white_refresh", SECONDS, 60.0, "rewrite a white triplet at most this often"),
        Keyword("deny_late", Bool(), False, "defer at DATA instead of MAIL"),
        Keyword("reject", Bool(), True, "0: record and log only"),
        Keyword("mode", Choice("denysoft", "testonly", "off"), None,
                "qpsmtpd's older switch: testonly/off = reject 0"),
        Keyword("subnet", Bool(), False, "group clients by /24 (IPv4) and /64 (IPv6)"),
        Keyword("auto_whitelist", Int(min=0), 0, "clients that passed N times skip greylisting"),
        Keyword("p0f", Text(what="KEY,VALUE pairs"), None, "greylist only these p0f matches"),
        Keyword("geoip", Text(what="country codes CC,CC"), None, "never greylist these countries"),
        Keyword("redis", Text(what="HOST[:PORT]"), None, "keep the triplets on this Redis server"),
        Keyword("db_dir", Text(what="a directory"), None, "ignored (the store replaces it)"),
        Keyword("nfslock", Bool(), False, "ignored"),
        Keyword("upgrade", Bool(), False, "ignored"),
        Keyword("per_recipient_db", Bool(), False, "ignored"),
    )

    def register(self, *args):
        self._white_seen = {}             # triplet key -> when it was last renewed (white_refresh)
        self._excluded_for = (None, None)    # (connection id, exclusion()) of the last connection
        words = self.file_words(self.config_list("denysoft_greylist"), "config/denysoft_greylist")
        self.settings = self.settings_from(words + [str(a) for a in self.args_list])
        for name in ("db_dir", "nfslock", "upgrade", "per_recipient_db"):
            if name in self.settings.given:
                self.log(LOGNOTICE, f"{name} is ignored: the triplets live in the shared store "
                                    "(docs/store.md)")
        self.redis = self.settings["redis"]
        if self.redis and ":" not in self.redis.rsplit("]", 1)[-1]:
            self.redis += ":6379"
        if self.redis:
            redis_store(self.app, self.redis)         # settings and the redis package, now
        else:
            check_store(self.app, greylist.TABLE, greylist.CLIENTS)
        if self.settings["recipient"] or self.settings["per_recipient"]:
            self.register_hook("rcpt", self.rcpt_handler)
        else:
            self.register_hook("mail", self.mail_handler)

    # -- settings ---------------------------------------------------------------------------
    def file_words(self, lines, what):
        """`key value` lines -> words, each line checked (errors name file:line)."""
        words = []
        for line in lines:
            parts = str(line).split(None, 1)
            if not parts:
                continue
            try:
                parse_arguments(self.plugin_name, self.arguments, parts)
            except ArgumentError as exc:
                raise ValueError(f"{getattr(line, 'origin', what)}: {exc}") from None
            words += parts
        return words

    def settings_from(self, words):
        """Parsed settings (defaults < file < plugin line), with qpsmtpd's `mode`."""
        settings = parse_arguments(self.plugin_name, self.arguments, words)
        if settings["mode"] is not None and "reject" not in settings.given:
            settings["reject"] = settings["mode"] == "denysoft"
        if settings["grey_timeout"] < settings["black_timeout"]:
            settings["grey_timeout"] = settings["black_timeout"]
        settings["p0f_pairs"] = _p0f_pairs(settings["p0f"]) if settings["p0f"] else ()
        settings["geoip_set"] = _countries(settings["geoip"]) if settings["geoip"] else frozenset()
        return settings

    def recipient_settings(self, transaction, rcpt):
        """per_recipient: the user_config hook's denysoft_greylist lines for rcpt."""
        code, values, _ = self.app.hooks.run("user_config", transaction, rcpt, "denysoft_greylist")
        if code != OK or not values:
            return self.settings
        try:
            words = self.file_words(values, f"user_config for {rcpt.address}")
            return self.settings_from(self._base_words() + words)     # the recipient's win
        except ValueError as exc:
            self.log(LOGERROR, f"{exc}; the global settings are used")
            return self.settings

    def _base_words(self):
        return (self.file_words(self.config_list("denysoft_greylist"), "config/denysoft_greylist")
                + [str(a) for a in self.args_list])

    # -- hooks ---------------------------------------------------------------------------------
    def mail_handler(self, transaction, sender, params=None):
        if sender.is_null:
            return self.null_sender(transaction, sender, None, self.settings)
        verdict = self.greylist(transaction, sender, None, self.settings)
        if verdict is None:
            return DECLINED
        if self.settings["deny_late"]:
            transaction.notes["greylist"] = verdict
            return DECLINED
        return DENYSOFT, verdict

    def rcpt_handler(self, transaction, rcpt, params=None):
        settings = self.settings
        if self.settings["per_recipient"]:
            settings = self.recipient_settings(transaction, rcpt)
        sender = transaction.sender
        if sender is None or sender.is_null:
            return self.null_sender(transaction, sender, rcpt, settings)
        verdict = self.greylist(transaction, sender, rcpt, settings)
        return (DENYSOFT, verdict) if verdict else DECLINED

    def null_sender(self, transaction, sender, rcpt, settings):
        """Bounces and probes are deferred at DATA, once the recipients are known."""
        verdict = self.greylist(transaction, sender, rcpt, settings)
        if verdict:
            transaction.notes["greylist"] = verdict
        return DECLINED

    def hook_data(self, transaction):
        verdict = transaction.notes.get("greylist")
        if not verdict:
            return DECLINED
        recipients = len(transaction.recipients)
        if recipients and (transaction.notes.get("whitelistrcpt") or 0) >= recipients:
            self.log(LOGINFO, "skip: all recipients whitelisted")
            return DECLINED
        return DENYSOFT, verdict

    # -- the check -------------------------------------------------------------------------------
    def greylist(self, transaction, sender, rcpt, settings):
        """The refusal text when this triplet must wait, else None."""
        conn = self.connection
        try:
            key = greylist.triplet_key(
                conn.remote_ip,
                (sender.address if sender is not None and not sender.is_null else "")
                if settings["sender"] else None,
                rcpt.address if (rcpt is not None and settings["recipient"]) else None,
                use_ip=settings["remote_ip"], subnet=settings["subnet"])
        except ValueError:
            key = False                          # logged below, unless the client is immune
        now = self.app.clock.time()
        refresh = settings["white_refresh"]
        # first the memory of white triplets: a known sender passes whatever else holds
        # (an immune or excluded client passes too), at the least cost
        if key and refresh and self.seen_white(key, now, refresh):
            return None
        if self.is_immune() or self.client_excluded(settings):
            return None
        if key is False:
            self.log(LOGERROR, f"skip, cannot make a key of client IP {conn.remote_ip!r}")
            return None
        if key is None:
            self.log(LOGERROR, "enable one of remote_ip, sender, or recipient!")
            return None
        decision = greylist.Decision()
        try:
            store = self.triplet_store()
            if self.auto_whitelisted(store, settings):
                return None
            if refresh and self.recently_white(store, key, now, settings):
                return None
            store.table(greylist.TABLE).update(
                key, lambda old: greylist.step(old, now, settings["black_timeout"],
                                               settings["grey_timeout"], settings["white_timeout"],
                                               decision))
            if decision.counts and settings["auto_whitelist"]:
                self.count_pass(store, settings)
        except (StoreError, OSError) as exc:
            self.log(LOGERROR, f"error, store: {exc} (no greylisting)")
            return None
        if decision.verdict == greylist.PASS:
            self.remember_white(key, now)
            self.log(LOGINFO, decision.message)
            return None
        if not settings["reject"]:
            self.log(LOGINFO, f"{decision.message}, tolerated (reject 0)")
            return None
        self.log(LOGWARN if decision.message.startswith("fail: initial") else LOGINFO,
                 decision.message)
        return DENYMSG

    def seen_white(self, key, now, refresh):
        """white_refresh: this process saw the triplet renewed less than N seconds ago
        (the common case of a busy server: a known sender's next message), so it
        passes without touching the store."""
        renewed = self._white_seen.get(key)
        if renewed is None or not 0 <= now - renewed < refresh:
            return False
        if self.logs(LOGINFO):
            self.log(LOGINFO, f"pass: white, renewed {now - renewed:.0f}s ago")
        return True

    def remember_white(self, key, now, renewed=None):
        seen = self._white_seen
        if len(seen) >= WHITE_SEEN_MAX:
            seen.clear()                  # a flood of senders: start over, never grow
        seen[key] = now if renewed is None else renewed

    def recently_white(self, store, key, now, settings):
        """white_refresh: a white triplet renewed less than N seconds ago passes on a read."""
        value = store.table(greylist.TABLE).get(key)
        if value is None:
            return False
        ts, _, _, white = greylist.parse_record(value)
        if not white:
            return False
        self.remember_white(key, now, ts)
        return self.seen_white(key, now, settings["white_refresh"])

    def triplet_store(self):
        return redis_store(self.app, self.redis) if self.redis else self.store

    def client_key(self, settings):
        return greylist.client_key(self.connection.remote_ip, settings["subnet"])

    def auto_whitelisted(self, store, settings):
        wanted = settings["auto_whitelist"]
        if not wanted:
            return False
        passes = int(store.table(greylist.CLIENTS).get(self.client_key(settings)) or 0)
        if passes >= wanted:
            self.log(LOGINFO, f"skip, auto-whitelisted client ({passes} passes)")
            return True
        return False

    def count_pass(self, store, settings):
        store.table(greylist.CLIENTS).update(
            self.client_key(settings), lambda old: str(int(old or 0) + 1),
            ttl=settings["white_timeout"])

    # -- exclusions ------------------------------------------------------------------------------
    def client_excluded(self, settings):
        """The client is not greylisted (logged with the reason). Worked out once per
        connection for the global settings: a session's next messages skip the p0f,
        geoip and exclude-file checks."""
        if settings is not self.settings:          # per_recipient: its own settings
            reason = self.exclusion(settings)
        else:
            conn_id = self.connection.id
            if self._excluded_for[0] != conn_id or conn_id is None:
                self._excluded_for = (conn_id, self.exclusion(settings))
            reason = self._excluded_for[1]
        if reason:
            self.log(LOGINFO, reason)
        return bool(reason)

    def exclusion(self, settings):
        """Why the client is not greylisted (p0f, geoip, greylist_exclude_files), or None."""
        if settings["p0f_pairs"] and not self.p0f_match(settings["p0f_pairs"]):
            return "skip: no p0f match"
        if settings["geoip_set"]:
            country = str(self.connection.notes.get("geoip_country") or "").upper()
            if country and country in settings["geoip_set"]:
                return f"skip: geoip country match ({country})"
        return self.exclude_file_match()

    def p0f_match(self, pairs):
        p0f = self.connection.notes.get("p0f")
        if not isinstance(p0f, dict):
            self.log(LOGERROR, "p0f info missing")
            return False
        for key, value in pairs:
            seen = p0f.get(key)
            if seen is None:
                continue
            try:
                if key == "distance" and float(seen) > float(value):
                    return True
                if key == "uptime" and float(seen) < float(value):
                    return True
            except ValueError:
                continue
            if key in ("genre", "link") and re.search(value, str(seen), re.I):
                return True
            if key == "detail" and str(seen).lower() == value.lower():
                return True
        return False

    def exclude_file_match(self):
        """Why greylist_exclude_files exempt the client ("skip: ..."), or None."""
        lists = self.parsed_config("greylist_exclude_files", self.exclude_lists)
        if not lists:
            return None
        conn = self.connection
        ip = parse_ip(conn.remote_ip)
        for path in lists:
            try:
                ips, names, patterns = self.parsed_file(path, parse_exclude_file)
            except OSError as exc:
                self.log(LOGERROR, f"greylist_exclude_files: cannot read {path}: {exc.strerror}")
                continue
            if ip is not None and ip in ips:
                return f"skip: {conn.remote_ip} excluded by {path}"
            if not names and not patterns:
                continue
            host = (conn.remote_host or "").lower().rstrip(".")
            if not host:
                continue
            labels = host.split(".")
            if any(".".join(labels[i:]) in names for i in range(len(labels))):
                return f"skip: {host} excluded by {path}"
            if any(p.search(host) for p in patterns):
                return f"skip: {host} matches a pattern in {path}"
        return None

    def exclude_lists(self, lines):
        out = []
        for line in lines:
            name = str(line).strip()
            if name:
                base = os.path.dirname(line.path) if getattr(line, "path", None) else "."
                out.append(name if os.path.isabs(name) else os.path.normpath(os.path.join(base, name)))
        return out


def parse_exclude_file(text):
    """(IPs, host names, regexes) of an exclude file (postgrey whitelist format)."""
    ips, names, patterns = set(), set(), []
    for line in text.splitlines():
        line = re.sub(r"#.*", "", line).strip()
        if not line:
            continue
        if len(line) > 1 and line.startswith("/") and line.endswith("/"):
            try:
                patterns.append(re.compile(line[1:-1], re.I))
            except re.error:
                pass
            continue
        ip = parse_ip(line)
        if ip is not None:
            ips.add(ip)
        else:
            names.add(line.lower().rstrip("."))
    return frozenset(ips), frozenset(names), tuple(patterns)
