"""berkeley_ipblacklist_ignore - the whitelist of berkeley_ipblacklist and
berkeley_tokenbucketadd: clients never blacklisted and never counted.

At connect it marks a matching client (connection note
`berkeley_ipblacklist_ignore`); list it before berkeley_ipblacklist. A client
matches when its IP is in config/berkeley_ipblacklist_ignore (one IP, CIDR
network or qpsmtpd-style prefix `192.168.1.` a line; # comments; re-read when it
changes) or has been added to the ignore table with `berkeley_operation --ignore
add IP` (table `<filename's table>.ignore` in the shared store).

Arguments: filename F (the same as berkeley_ipblacklist's; default ipblacklist).
Hooks: connect.  Example:  berkeley_ipblacklist_ignore filename /var/db/ipbl.db
"""

from qpsmtpd_py.api import (
    DECLINED, LOGERROR, LOGINFO, Keyword, Plugin, StoreError, Text, cached_iplist, tokenbucket as TB,
)


class BerkeleyIPBlacklistIgnore(Plugin):
    arguments = (
        Keyword("filename", Text(what="a file name"), TB.DEFAULT_FILE,
                "the blacklist's file name (names the ignore table)"),
    )

    def register(self, *args):
        self.table_name = TB.table_name(self.args["filename"]) + ".ignore"

    def hook_connect(self, transaction):
        conn = self.connection
        ip = conn.remote_ip
        entries = [str(l).split()[0] for l in self.config_list("berkeley_ipblacklist_ignore")
                   if str(l).split()]
        if entries and ip in cached_iplist(entries):
            conn.notes[TB.IGNORE_NOTE] = 1
            self.log(LOGINFO, f"pass, {ip} in config/berkeley_ipblacklist_ignore")
            return DECLINED
        try:
            if self.store.table(self.table_name).get(ip) is not None:
                conn.notes[TB.IGNORE_NOTE] = 1
                self.log(LOGINFO, f"pass, {ip} in table {self.table_name}")
        except (StoreError, OSError) as exc:
            self.log(LOGERROR, f"error, store: {exc}")
        return DECLINED
