"""berkeley_ipblacklist - refuse clients whose IP is blacklisted, or whose token
bucket of misdeeds is empty, at connect.

qpsmtpd's BerkeleyDB blacklist, on the shared store instead (docs/store.md: LMDB,
or Redis for several MX hosts): `filename` names the table (its base name, e.g.
/var/db/ipblacklist.db -> table berkeley_ipblacklist.db), shared with
berkeley_tokenbucketadd, berkeley_ipblacklist_ignore and the admin tool
`berkeley_operation`.

Methods:
  simple         an IP is blacklisted while it has an entry added by
                 `berkeley_operation add` (with an expiry, or until removed)
  tokenbucket    each client has a bucket of `size` tokens refilling at `rate` per
                 second; berkeley_tokenbucketadd takes one for every refusal the
                 client earns. An empty bucket (misbehaving faster than the rate for
                 longer than a burst) blacklists it until a token has come back
  tokenbucketx2  two buckets (rate/size: a short burst; rate2/size2: the long run);
                 either empty blacklists
An IP added with `berkeley_operation add` is blacklisted whatever the method.

Arguments:
  filename F     the table (default ipblacklist); qpsmtpd required it
  type btree|hash    ignored
  action deny|denysoft|log   default denysoft (deny: 550, denysoft: 450, both close
                 the connection; log: only log)
  method simple|tokenbucket|tokenbucketx2   default simple
  rate R, size N, rate2 R, size2 N   the buckets (defaults 0.1/s and 10; 0.001/s and
                 100); give berkeley_tokenbucketadd the same values

Replies: `550 Your IP is blacklisted, bye bye.` (action deny) or `450 Your IP is
blacklisted, try again later.` (denysoft); the connection is closed.
Skipped: relay clients, whitelisted hosts, clients berkeley_ipblacklist_ignore
matched (note berkeley_ipblacklist_ignore). If the store fails, nobody is refused
and an error is logged.
Durability: the LMDB store fsyncs its commits within a second (store_sync 1s, the
default since 2026-12-04; docs/store.md): a crash of a process or of the server
loses nothing, a power failure at most about the last second of tokens taken.
Hooks: connect.
Example config/plugins lines:
  berkeley_ipblacklist_ignore
  berkeley_ipblacklist filename /var/db/ipbl.db method tokenbucket rate 0.05 size 20
  ...
  berkeley_tokenbucketadd filename /var/db/ipbl.db rate 0.05 size 20
"""

from qpsmtpd_py.api import (
    DECLINED, DENY, DENYSOFT, LOGERROR, LOGINFO, LOGNOTICE, Choice, Keyword, Plugin, StoreError,
    check_store, tokenbucket as TB,
)

MESSAGES = {"deny": "Your IP is blacklisted, bye bye.",
            "denysoft": "Your IP is blacklisted, try again later."}


def listed(value, now, method, buckets):
    """Blacklisted by an explicit entry, or (bucket methods) by an empty bucket."""
    if value is None:
        return False
    if value.startswith(b"L:"):
        return True
    return method != "simple" and TB.empty(value, now, buckets)


class BerkeleyIPBlacklist(Plugin):
    arguments = TB.ARGUMENTS + (
        Keyword("action", Choice("deny", "denysoft", "log"), "denysoft", "what to do with a "
                "blacklisted client"),
        Keyword("method", Choice("simple", "tokenbucket", "tokenbucketx2"), "simple",
                "how an IP counts as blacklisted"),
    )

    def register(self, *args):
        if "type" in self.args.given:
            self.log(LOGNOTICE, "type is ignored: the table lives in the shared store")
        self.table_name = TB.table_name(self.args["filename"])
        self.buckets = TB.buckets(self.args, self.args["method"])
        self.table = check_store(self.app, self.table_name).table(self.table_name)

    def hook_connect(self, transaction):
        if self.is_immune() or self.connection.notes.get(TB.IGNORE_NOTE):
            return DECLINED
        ip = self.connection.remote_ip
        try:
            value = self.table.get(ip)
        except (StoreError, OSError) as exc:
            self.log(LOGERROR, f"error, store: {exc} (no blacklist)")
            return DECLINED
        if not listed(value, self.app.clock.time(), self.args["method"], self.buckets):
            self.log(LOGINFO, "pass")
            return DECLINED
        action = self.args["action"]
        self.log(LOGINFO, f"fail, {ip} is blacklisted ({self.args['method']}, action {action})")
        if action == "log":
            return DECLINED
        return (DENY if action == "deny" else DENYSOFT), MESSAGES[action]
