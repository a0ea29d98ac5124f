"""fcrdns - forward-confirmed reverse DNS of the client (the iprev method of RFC 8601).

The client's address is looked up for its host names (PTR), and those names for
their addresses (A and AAAA); the check passes when a name resolves back to the
client's address. Zombie PCs cannot choose their reverse DNS, so a match is a
good sign and its absence a weak bad one. The result goes into the
Authentication-Results header of every message on the connection, into karma,
and into the connection note `fcrdns`; with `reject 1` it can refuse.

Lookups: the PTR lookup is the engine's own (started before the connect hooks);
the forward lookups start as soon as it answers, in the background. Nothing
waits at connect: the result is collected at the first RCPT when it can refuse,
else when the first message's headers are written (or not at all for a session
without mail). At most 5 PTR names are followed.

Results (iprev, RFC 8601 2.7.3):
  pass       a PTR name resolves to the client's address -- or, as in qpsmtpd, to an
             address in the same /24 (IPv6: /64), for pools like mx0/mx1.example.com
  fail       the names resolve, but not back to the client (or do not exist)
  permerror  the address has no PTR record
  temperror  a lookup failed or timed out
Header part: `iprev=<result> policy.iprev=<ip> (<name>)`.

Karma: +1 for pass, -1 for fail or permerror; -1 more for a PTR name that is
"localhost" on a client that is not loopback, that has no dot, or that holds
characters other than letters, digits, '-' and '.' (such a "localhost" counts
as fail).

Arguments:
  reject 0|1|naughty   default 0: only record. 1 refuses RCPT (except to postmaster
                       and abuse) for fail and permerror, never for temperror
  reject_type          default temp (qpsmtpd's)
  timeout N            accepted for qpsmtpd configs; the lookups take at most
                       dns_timeout (config dns_timeout)

Reply (reject 1): 450 Your address <ip> has no forward-confirmed reverse DNS (<result>)
Skipped: relay clients and whitelisted hosts (is_immune).
Notes: connection notes `fcrdns` (the result word) and `iprev` (the details).
Hooks: connect (starts the lookups, ahead of every other connect hook), rcpt,
data_post_headers.

Differences from qpsmtpd: one iprev result per connection (qpsmtpd could record
several, e.g. permerror and fail, for one client); `reject` works as its manual
says (qpsmtpd's code never refused); IPv6 neighbours are /64.
"""

import re

from qpsmtpd_py.api import (
    DECLINED, LOGINFO, REJECT_TYPE, Choice, Keyword, Number, Plugin, dnslist, parse_ip,
)

_BAD_CHARS = re.compile(r"[^a-zA-Z0-9.-]")
SPECIAL_ACCOUNTS = ("postmaster", "abuse")


class Fcrdns(Plugin):
    arguments = (
        Keyword("reject", Choice("0", "1", "naughty", aliases={
            "no": "0", "false": "0", "off": "0", "yes": "1", "true": "1", "on": "1"}), "0",
            "1 refuses RCPT for fail and permerror, naughty defers that to naughty, 0 records"),
        REJECT_TYPE.but(default="temp"),
        Keyword("timeout", Number(min=0, unit="seconds"), None,
                "accepted for qpsmtpd configs; lookups take at most dns_timeout"),
    )

    def register(self, *args):
        self.register_hook("connect", self.start_lookups, unshift=True)

    def start_lookups(self, transaction):
        dnslist.start_iprev(self)
        return DECLINED

    def result(self):
        """The IPRev of this client, collected and scored once; None when immune."""
        conn = self.connection
        if self.is_immune():
            return None
        found = conn.notes.get("fcrdns_checked")
        if found is not None:
            return found
        found = dnslist.iprev(self)
        problem = self.name_problem(found.names[0] if found.names else None)
        if problem:
            self.adjust_karma(-1)
            self.log(LOGINFO, f"fail, PTR name {found.names[0]}: {problem}")
            if problem == "fake localhost":
                found = dnslist.IPRev(found.ip, "fail", found.names, reason="fake localhost")
        if found.result == "pass":
            self.adjust_karma(1)
            self.log(LOGINFO, f"pass, {found.name}" + (" (same network)" if found.network else ""))
        elif found.result in ("fail", "permerror"):
            self.adjust_karma(-1)
            self.log(LOGINFO, f"fail, {found.result}: {found.reason}")
        else:
            self.log(LOGINFO, f"error, {found.reason}")
        conn.notes["fcrdns"] = found.result
        conn.notes["fcrdns_checked"] = found
        return found

    def name_problem(self, name):
        if not name:
            return None
        ip = parse_ip(self.connection.remote_ip)
        if name.lower() == "localhost":
            return None if ip is not None and ip.is_loopback else "fake localhost"
        if "." not in name:
            return "not a fully qualified name"
        if _BAD_CHARS.search(name):
            return "invalid characters"
        return None

    def hook_rcpt(self, transaction, rcpt, params=None):
        if self.args["reject"] == "0":
            return DECLINED
        if rcpt.user and rcpt.user.lower() in SPECIAL_ACCOUNTS:
            return DECLINED
        found = self.result()
        if found is None or found.result not in ("fail", "permerror"):
            return DECLINED
        return self.get_reject(f"Your address {found.ip} has no forward-confirmed reverse DNS "
                               f"({found.result})", found.reason)

    def hook_data_post_headers(self, transaction):
        found = self.result()
        if found is not None:
            self.store_auth_results(found.auth_result())
        return DECLINED
