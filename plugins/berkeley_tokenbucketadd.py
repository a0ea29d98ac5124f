"""berkeley_tokenbucketadd - take a token from a client's bucket for every refusal
it earns (dictionary attacks, relaying attempts ...), for berkeley_ipblacklist.

It runs in the deny hook, which follows every refusal by any plugin (unknown
recipients, relaying denied, policy refusals). Each one takes a token from the
client's bucket(s) in the table named by `filename`; berkeley_ipblacklist (method
tokenbucket or tokenbucketx2, the same filename, rate and size) refuses the client
at its next connection once a bucket is empty. The update is one atomic store
operation: 50 children refusing one client at once lose no token.

Arguments: filename, rate, size, rate2, size2 as for berkeley_ipblacklist;
  method tokenbucket|tokenbucketx2   default tokenbucket
  only PLUGIN,PLUGIN   count only refusals by these plugins (default: all)
Skipped: relay clients, whitelisted hosts, clients berkeley_ipblacklist_ignore
matched. Store failures are logged; nothing else happens.
Durability: the LMDB store fsyncs its commits within a second (store_sync 1s, the
default since 2026-12-04; docs/store.md): a crash of a process or of the server
loses nothing, a power failure at most about the last second of tokens taken.
Hooks: deny.
Example:  berkeley_tokenbucketadd filename /var/db/ipbl.db only rcpt_ok,check_badrcptto
"""

from qpsmtpd_py.api import (
    DECLINED, LOGDEBUG, LOGERROR, LOGINFO, Choice, Domains, Keyword, Plugin, StoreError,
    check_store, tokenbucket as TB,
)


class BerkeleyTokenbucketAdd(Plugin):
    arguments = TB.ARGUMENTS + (
        Keyword("method", Choice("tokenbucket", "tokenbucketx2"), "tokenbucket",
                "one bucket or two"),
        Keyword("only", Domains(), frozenset(), "count only refusals by these plugins"),
    )

    def register(self, *args):
        self.table_name = TB.table_name(self.args["filename"])
        self.buckets = TB.buckets(self.args, self.args["method"])
        self.table = check_store(self.app, self.table_name).table(self.table_name)

    def hook_deny(self, transaction, plugin_name, code, message=""):
        only = self.args["only"]
        if only and plugin_name.split(":", 1)[0].lower() not in only:
            return DECLINED
        conn = self.connection
        if conn is None or self.is_immune() or conn.notes.get(TB.IGNORE_NOTE):
            return DECLINED
        now = self.app.clock.time()
        try:
            value = self.table.update(
                conn.remote_ip, lambda old: keep_listing(old, now, self.buckets))
        except (StoreError, OSError) as exc:
            self.log(LOGERROR, f"error, store: {exc}")
            return DECLINED
        tokens = TB.level(value, now, self.buckets) if not value.startswith(b"L:") else []
        self.log(LOGINFO if tokens and min(tokens) < 1 else LOGDEBUG,
                 f"{conn.remote_ip} refused by {plugin_name}: tokens left "
                 + "/".join(f"{t:.1f}" for t in tokens))
        return DECLINED


def keep_listing(old, now, buckets):
    """Take a token, unless the IP is listed by hand (that entry stays as it is)."""
    if old is not None and old.startswith(b"L:"):
        return old
    return TB.take(old, now, buckets)
