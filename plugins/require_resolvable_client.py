"""require_resolvable_client - refuse clients whose IP address has no name in the DNS
(after Peter J. Holzer's plugin of 2006).

The client's address must have a PTR record and, with forward_lookup (the
default), one of its names must resolve back to the address (forward-confirmed
reverse DNS, the same check and the same lookups as the fcrdns plugin: a name
resolving to a neighbour in the same /24, IPv6 /64, counts). The lookups start
at connect, together with every other plugin's; the answer is worked out once per
connection.

Arguments (0|1):
  at_connect 0      1: refuse instead of greeting and close the connection (saves
                    work and stops address harvesting; cannot be per recipient)
  per_recipient 0   1: check only for recipients whose `recipient_options` (set
                    by the aliases plugin, e.g. `user: (require_resolvable_client) ...`)
                    hold `require_resolvable_client`; a value with forward_lookup
                    ({'forward_lookup': '0'}) overrides that argument for the recipient
  permfail 0        1: refuse with 550 instead of 450 (the default gives the client's
                    admin a chance to fix the DNS before a user notices)
  forward_lookup 1  0: a PTR record is enough

Replies (450, or 550 with permfail; at connect the connection is closed):
  Your address <ip> has no name in the DNS (no PTR record)
  The name <name> of your address <ip> does not resolve back to it
  Temporary failure looking up your address <ip>, try again later   (always 450:
                    a DNS failure or time-out never refuses for good)
RCPT to postmaster and abuse is never refused.

Skipped: relay clients and whitelisted hosts (is_immune), and a client whose
connection note `client_options` holds {'require_resolvable_client': {'skip': 1}}
(Holzer's client_options plugin).

Hooks: connect (lookups start ahead of every other connect hook; the decision with
at_connect), rcpt.
Example: require_resolvable_client at_connect 1 permfail 1
"""

from qpsmtpd_py.api import (
    DECLINED, DENY, DENYSOFT, LOGINFO, Bool, Keyword, Plugin, dnslist,
)

SPECIAL_ACCOUNTS = ("postmaster", "abuse")
TRUE_WORDS = ("1", "yes", "true", "on")


class RequireResolvableClient(Plugin):
    arguments = (
        Keyword("per_recipient", Bool(), False,
                "check only recipients whose recipient_options ask for it"),
        Keyword("at_connect", Bool(), False, "refuse at connect and close the connection"),
        Keyword("permfail", Bool(), False, "550 instead of 450"),
        Keyword("forward_lookup", Bool(), True, "a PTR name must resolve back to the address"),
    )

    def register(self, *args):
        if self.args["at_connect"] and self.args["per_recipient"]:
            raise ValueError("at_connect and per_recipient cannot be combined: at connect "
                             "there are no recipients yet")
        self.register_hook("connect", self.start_lookups, unshift=True)

    def start_lookups(self, transaction):
        dnslist.start_iprev(self)
        return DECLINED

    def skipped(self):
        options = self.connection.notes.get("client_options") or {}
        mine = options.get("require_resolvable_client") if isinstance(options, dict) else None
        if isinstance(mine, dict) and mine.get("skip"):
            self.log(LOGINFO, "skip, client_options")
            return True
        return self.is_immune()

    def hook_connect(self, transaction):
        if not self.args["at_connect"] or self.skipped():
            return DECLINED
        return self.check(self.args["forward_lookup"])

    def hook_rcpt(self, transaction, rcpt, params=None):
        if self.args["at_connect"] or self.skipped():
            return DECLINED
        if rcpt.user and rcpt.user.lower() in SPECIAL_ACCOUNTS:
            return DECLINED
        forward = self.args["forward_lookup"]
        if self.args["per_recipient"]:
            option = (rcpt.notes.get("recipient_options") or {}).get("require_resolvable_client")
            if not option:
                return DECLINED
            if isinstance(option, dict) and "forward_lookup" in option:
                forward = str(option["forward_lookup"]).lower() in TRUE_WORDS
        return self.check(forward)

    def check(self, forward):
        found = dnslist.iprev(self)
        code = DENY if self.args["permfail"] else DENYSOFT
        if found.result == "temperror" and (forward or not found.names):
            self.log(LOGINFO, f"fail, temporary: {found.reason}")
            return DENYSOFT, f"Temporary failure looking up your address {found.ip}, try again later"
        if found.result == "permerror":
            self.log(LOGINFO, "fail, no PTR record")
            return code, f"Your address {found.ip} has no name in the DNS (no PTR record)"
        if forward and found.result == "fail":
            self.log(LOGINFO, f"fail, {found.reason}")
            return code, (f"The name {found.names[0]} of your address {found.ip} does not "
                          "resolve back to it")
        self.log(LOGINFO, f"pass, {found.name or found.names[0]}")
        return DECLINED
