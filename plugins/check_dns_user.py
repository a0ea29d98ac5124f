"""check_dns_user - refuse recipients that are not listed in a DNS zone of users
(after Hanno Hecker's plugin: one user list that several servers share).

A recipient user@domain is looked up as the A record of `user.domain.ZONE`. An
answer (any address) means the mailbox exists; "no such name" means it does not,
and the recipient is refused. A wildcard record makes a catch-all domain:
`*.example.org.users.example.net. A 127.0.0.2` accepts every user of example.org.

Which recipients are checked: those in the domains given with `domains`, else
those in our local domains (me, rcpthosts, morercpthosts). Relayed mail to other
domains is left to rcpt_ok. The domain must be in the zone at least once
(`domain.ZONE` exists, e.g. because some user is listed under it); when it is
not, the recipient is not decided here either (logged), so a domain the zone does
not cover yet is not refused wholesale.

Zone example (users.example.net):
  alice.example.org.users.example.net.   A 127.0.0.2
  bob.example.org.users.example.net.     A 127.0.0.2
  *.catchall.example.users.example.net.  A 127.0.0.2

The local part is lower-cased; its dots become label separators
(john.doe@example.org -> john.doe.example.org.ZONE). A local part that cannot be a
DNS name (spaces, quotes, an empty label, over 63 characters between dots) cannot
be listed and is refused.

Arguments:
  ZONE (first word, required)   the zone holding the users
  domains D1,D2                 check only these domains (default: our local domains)
  reject_type perm|temp|disconnect|temp_disconnect   default perm

Replies:
  550 Sorry, no mailbox here by that name. (#5.1.1)
  450 Temporary failure looking up the recipient, try again later (#4.4.3)
                                (the lookup failed or timed out: never accepted by chance)
A listed recipient is DECLINED (logged pass): the plugins after it (rcpt_ok ...)
still decide.
Hooks: rcpt.
Example: check_dns_user users.example.net domains example.org,example.com
"""

import re

from qpsmtpd_py.api import (
    DECLINED, DENYSOFT, DNSFailure, LOGINFO, NO_MAILBOX, REJECT_TYPE, Domains, Keyword,
    Plugin, Positional, Text, dnslist, is_local_domain,
)

_LABEL = re.compile(r"[a-z0-9!#$%&'*+/=?^_`{|}~-]{1,63}")
TEMPFAIL = "Temporary failure looking up the recipient, try again later (#4.4.3)"


def _zone(text):
    zone = text.lower().rstrip(".")
    if not dnslist.valid_zone(zone):
        raise ValueError("expected a DNS zone name")
    return zone


class CheckDnsUser(Plugin):
    arguments = (
        Positional("ZONE", Text(), None, "the zone holding the users", required=True,
                   keyword=True),
        Keyword("domains", Domains(), None, "check only these domains (default: our local ones)"),
        REJECT_TYPE.but(default="perm"),
    )

    def register(self, *args):
        try:
            self.zone = _zone(self.args["ZONE"])
        except ValueError as exc:
            raise ValueError(f"zone '{self.args['ZONE']}': {exc}")

    def checked(self, domain):
        domains = self.args["domains"]
        if domains is not None:
            return domain in domains
        return is_local_domain(self, domain)

    def hook_rcpt(self, transaction, rcpt, params=None):
        domain = (rcpt.host or "").lower().rstrip(".")
        if not rcpt.user or not domain or not self.checked(domain):
            return DECLINED
        user = rcpt.user.lower()
        if not all(_LABEL.fullmatch(label) for label in user.split(".")):
            self.log(LOGINFO, f"fail, '{rcpt.user}' cannot be a DNS name")
            return self.get_reject_type(), NO_MAILBOX
        mailbox = self.resolver.submit(f"{user}.{domain}.{self.zone}", "A")
        known_domain = self.resolver.submit(f"{domain}.{self.zone}", "A")
        try:
            if mailbox.result():
                self.log(LOGINFO, f"pass, {rcpt.address} is listed")
                return DECLINED
            if known_domain.result().nxdomain:
                self.log(LOGINFO, f"skip, {domain} is not in {self.zone}")
                return DECLINED
        except DNSFailure as exc:
            self.log(LOGINFO, f"error, {exc}")
            return DENYSOFT, TEMPFAIL
        self.log(LOGINFO, f"fail, {rcpt.address} is not in {self.zone}")
        return self.get_reject_type(), NO_MAILBOX
