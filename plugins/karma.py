"""karma - reward nice and penalize naughty mail senders, per client IP.

Other plugins score each connection with `self.adjust_karma(n)` (connection note
`karma`, an integer: dnsbl -1, a spam verdict -1, good SPF +1 ...). At disconnect
karma records the verdict per IP in the shared store (docs/store.md; LMDB or
Redis, table `karma`): a connection scoring -strikes or below is naughty, one
scoring +strikes or above is nice. A client whose naughty connections outnumber
its nice ones by `negative` goes to the penalty box for penalty_days; while there,
its connections are refused. Repeat offenders that never sent anything nice (more
than 5 naughty more than nice) get a day more per naughty connection ("penalty box
bonus").

Notes for other plugins:
  karma_history  (connection, integer) nice - naughty of this IP, set at
                 pre-connection and again at connect; hosts_allow raises or lowers
                 the per-IP connection limit by it, earlytalker skips its wait above 5
  karma          (connection, integer) this connection's score, 0 at connect

Arguments:
  negative N       how far naughty may outnumber nice before the penalty box (default 1)
  strikes N        the score that makes a connection naughty (-N) or nice (+N) (default 3)
  penalty_days D   length of a penalty, days, fractions allowed (default 1)
  reject 0|1|connect|naughty   what to do with a client in the penalty box
                   (default naughty: note it for the naughty plugin; 1 and connect
                   refuse at connect; 0 only logs)
  reject_type T    default disconnect
  history_days D   a record not touched for D days is forgotten (default 90; the
                   store needs an expiry, and a penalty always outlives it)
  db_dir, nfslock  accepted and ignored, with a notice (the store replaces them)

config/karma_tlds: `tld:score` lines (`work:-4`); a sender whose domain ends in
.tld has its score adjusted.

Hooks and replies:
  pre-connection   karma_history
  connect          karma 0; a client in the penalty box:
                   `You were naughty. You cannot connect for N.NN more days.`
  mail, rcpt       -2 when the command's argument does not start with `FROM:<` /
                   `TO:<` (a space after the colon, no brackets); karma_tlds at MAIL;
                   from the second recipient, a client with karma_history <= 0 and a
                   connection score <= 0: DENY `too many recipients for karma K (h: H)`
  data, data_post  a score below -4: `very bad karma: K` (per reject/reject_type;
                   skipped when the connection is already naughty)
  disconnect       the record is updated (one atomic update: 50 children at once
                   lose no count)
Relay clients and whitelisted hosts/senders are never refused or recorded.

Store record per IP (key: the IP as an integer), qpsmtpd's
`penalty_start_ts:naughty:nice:connects`; `karma_tool` (capture, release, prune,
search, list) manages it. If the store fails, nothing is refused and an error is
logged.
Durability: the LMDB store fsyncs its commits within a second (store_sync 1s, the
default since 2026-12-04; docs/store.md): a crash of a process or of the server
loses nothing, a power failure at most about the last second of karma records.

Example config/plugins lines (karma before hosts_allow and earlytalker; naughty
after the plugins whose refusals it applies):
  karma reject naughty penalty_days 2
  naughty reject rcpt

Differences from qpsmtpd:
  * A naughty connection is counted (as written qpsmtpd never incremented the
    naughty count, so its history could never go negative).
  * Records expire after history_days without connections.
"""

import ipaddress

from qpsmtpd_py.api import (
    DECLINED, DENY, LOGDEBUG, LOGERROR, LOGINFO, LOGNOTICE, REJECT_TYPE, Bool, Choice, Int,
    Keyword, Number, Plugin, StoreError, Text, check_store, karma_records as K,
)

DAY = 86400.0
RECORD_NOTE = "_karma_record"          # the record read at pre-connection, for connect


def parse_tlds(lines):
    out = {}
    for line in lines:
        tld, _, score = str(line).partition(":")
        try:
            out[tld.strip().lower().lstrip(".")] = int(score.strip())
        except ValueError:
            continue
    return out


class Karma(Plugin):
    arguments = (
        Keyword("negative", Int(min=1), 1, "how far naughty may outnumber nice"),
        Keyword("strikes", Int(min=1), 3, "the score of a naughty (-N) or nice (+N) connection"),
        Keyword("penalty_days", Number(min=0, unit="days"), 1.0, "length of a penalty"),
        Keyword("reject", Choice("0", "1", "connect", "naughty", aliases={
            "no": "0", "off": "0", "false": "0", "yes": "1", "on": "1", "true": "1"}),
            "naughty", "what to do with a client in the penalty box"),
        REJECT_TYPE.but(default="disconnect"),
        Keyword("history_days", Number(min=1, unit="days"), 90.0,
                "forget a record not touched for this long"),
        Keyword("db_dir", Text(what="a directory"), None, "ignored (the store replaces it)"),
        Keyword("nfslock", Bool(), False, "ignored"),
    )

    def register(self, *args):
        for name in ("db_dir", "nfslock"):
            if name in self.args.given:
                self.log(LOGNOTICE, f"{name} is ignored: karma keeps its records in the shared "
                                    "store (docs/store.md)")
        self.records = check_store(self.app, K.TABLE).table(K.TABLE)

    # -- the record ------------------------------------------------------------------------
    def key(self, ip=None):
        try:
            return K.ip_key(ip or self.connection.remote_ip)
        except ValueError:
            self.log(LOGINFO, "skip, unable to get DB key")
            return None

    def record(self, key):
        """The stored record or None; None and a logged error when the store fails."""
        try:
            value = self.records.get(key)
        except (StoreError, OSError) as exc:
            self.log(LOGERROR, f"error, store: {exc}")
            return None
        return None if value is None else K.parse(value)

    def calc_karma(self, record):
        naughty, nice = record[1], record[2]
        if not naughty and not nice:
            return 0
        history = nice - naughty
        self.connection.notes["karma_history"] = history
        if history > 10:
            self.adjust_karma(1)
        return history

    # -- hooks ---------------------------------------------------------------------------------
    def hook_pre_connection(self, transaction, args):
        notes = self.connection.notes
        notes["karma_history"] = 0
        key = self.key(args.get("remote_ip"))
        record = self.record(key) if key else None
        notes[RECORD_NOTE] = record              # connect uses it: one read per connection
        if record is None:
            self.log(LOGDEBUG, "pass, no record")
            return DECLINED
        self.calc_karma(record)
        return DECLINED

    def hook_connect(self, transaction):
        notes = self.connection.notes
        notes["karma"] = 0
        notes.setdefault("karma_history", 0)
        if self.is_immune():
            return DECLINED
        if RECORD_NOTE in notes:
            record = notes.pop(RECORD_NOTE)
        else:                                    # no pre-connection (qpsmtpd under inetd)
            key = self.key()
            record = self.record(key) if key else None
        if record is None:
            self.log(LOGINFO, "pass, no record")
            return DECLINED
        penalty, naughty, nice, connects = record
        summary = f"{naughty} naughty, {nice} nice, {connects} connects"
        karma = self.calc_karma(record)
        if not penalty:
            self.log(LOGINFO, f"pass, no penalty ({summary})")
            return DECLINED
        days_old = (self.app.clock.time() - penalty) / DAY
        if days_old >= self.args["penalty_days"]:
            self.log(LOGINFO, f"pass, penalty expired ({summary})")
            return DECLINED
        try:
            self.records.update(self.key(), count_connect)
        except (StoreError, OSError) as exc:
            self.log(LOGERROR, f"error, store: {exc}")
        left = self.args["penalty_days"] - days_old
        return self.get_reject(f"You were naughty. You cannot connect for {left:.2f} more days.",
                               str(karma))

    def hook_mail(self, transaction, sender, params=None):
        self.illegal_envelope_format("FROM:<")
        tlds = self.parsed_config("karma_tlds", parse_tlds)
        host = (sender.host or "").lower().rstrip(".") if tlds else ""
        if host:
            for tld, score in tlds.items():
                if score and host.endswith("." + tld):
                    self.log(LOGINFO, f"adjusting karma for .{tld} envelope sender")
                    self.adjust_karma(score)
        return DECLINED

    def hook_rcpt(self, transaction, rcpt, params=None):
        self.illegal_envelope_format("TO:<")
        count = len(transaction.recipients)
        if not count or self.is_immune():         # the first recipient is always let by
            return DECLINED
        self.log(LOGINFO, f"recipients t: {count} ({rcpt.address})")
        notes = self.connection.notes
        history = notes.get("karma_history") or 0
        if history > 0:
            self.log(LOGINFO, "info, good history")
            return DECLINED
        karma = notes.get("karma") or 0
        if karma > 0:
            self.log(LOGINFO, "info, good connection")
            return DECLINED
        return DENY, f"too many recipients for karma {karma} (h: {history})"

    def hook_data(self, transaction):
        karma = self.connection.notes.get("karma") or 0
        if karma >= -4 or self.is_immune() or self.is_naughty():
            return DECLINED
        return self.get_reject(f"very bad karma: {karma}")

    hook_data_post = hook_data

    def hook_disconnect(self, transaction):
        karma = self.connection.notes.get("karma") or 0
        if not karma:
            self.log(LOGDEBUG, "no karma")
            return DECLINED
        if self.connection.relay_client or self.connection.notes.get("whitelisthost"):
            return DECLINED
        key = self.key()
        if key is None:
            return DECLINED
        now = self.app.clock.time()
        outcome = []
        args = self.args
        try:
            self.records.update(
                key, lambda old: judge(old, karma, now, args["strikes"], args["negative"],
                                       args["penalty_days"], args["history_days"], outcome))
        except (StoreError, OSError) as exc:
            self.log(LOGERROR, f"error, store: {exc}")
            return DECLINED
        self.log(LOGINFO, outcome[-1])
        return DECLINED

    def illegal_envelope_format(self, start):
        """qpsmtpd: -2 when the raw argument has a space after the colon or no <."""
        line = str(self.connection.notes.get("original_string") or "")
        argument = line.partition(" ")[2]
        if argument[:len(start)].upper() != start:
            self.log(LOGINFO, f"illegal envelope address format: {argument}")
            self.adjust_karma(-2)


def count_connect(old):
    penalty, naughty, nice, connects = K.parse(old)
    return K.format(penalty, naughty, nice, connects + 1)


def judge(old, karma, now, strikes, negative, penalty_days, history_days, outcome):
    """The disconnect update of one IP's record (pure: it may run twice)."""
    penalty, naughty, nice, connects = K.parse(old)
    history = nice - naughty
    if karma <= -strikes:
        naughty += 1
        history -= 1
        if history <= -negative:
            bonus = ""
            if nice == 0 and history < -5:
                penalty, bonus = now + abs(history) * DAY, ", penalty box bonus!"
            else:
                penalty = now
            message = "negative, sent to penalty box" + bonus
        else:
            message = "negative"
    elif karma >= strikes:
        nice += 1
        message = "positive"
    else:
        message = "neutral"
    outcome.append(f"{message}, (msg: {karma}, his: {history})")
    ttl = max(history_days * DAY, (penalty + penalty_days * DAY - now) if penalty else 0)
    return K.format(penalty, naughty, nice, connects + 1), ttl
