"""rcpt_ok - accept recipients in our own domains; refuse relaying for everyone else.

Config files:
  me              our host name; mail to it (and to localhost) is local
  rcpthosts       one domain a line; a line starting with '.' matches every
                  sub-domain ('.example.com' matches mx.example.com)
  morercpthosts   more domains, as morercpthosts.cdb (qmail-newmrh format)

Hooks: rcpt. Load it last among the rcpt plugins: it answers OK or DENY.

Clients that may relay (connection.relay_client: the relay plugin, RELAYCLIENT,
a successful AUTH) are accepted for any recipient. Unlike qpsmtpd HEAD, the
whitelist notes (whitelisthost, whitelistsender) do NOT allow relaying: a
whitelist exempts a client from policy checks, and a forged whitelisted envelope
sender must never turn the server into an open relay (qpsmtpd 0.94 behaved the
same way). For everyone else an address in a local domain is refused
when it hides another destination, the classic open-relay tricks
(user%other@local, "user@other"@local, other!user@local, <@local:user@other>):

  550 5.7.1 Relaying denied (#5.7.1)

Example config/plugins line:  rcpt_ok
"""

from qpsmtpd_py.api import DENY, LOGINFO, OK, Plugin, is_local_domain

RELAY_DENIED = "Relaying denied (#5.7.1)"


class RcptOk(Plugin):
    arguments = ()                # none but loglevel: anything else stops start-up

    def hook_rcpt(self, transaction, rcpt, params=None):
        if self.connection.relay_client:
            self.log(LOGINFO, "pass, relay client")
            return OK
        host = (rcpt.host or self.app.me).lower()
        if not is_local_domain(self, host):
            self.log(LOGINFO, f"fail, {host} is not one of our domains")
            return DENY, RELAY_DENIED
        trick = relay_trick(rcpt)
        if trick:
            self.log(LOGINFO, f"fail, relay trick in {rcpt}: {trick}")
            return DENY, RELAY_DENIED
        self.log(LOGINFO, f"pass, {host} is local")
        return OK


def relay_trick(rcpt):
    """Why a local-domain address would really route elsewhere, or ''."""
    if rcpt.route:
        return "source route"
    user = rcpt.user or ""
    for char, name in (("%", "percent hack"), ("@", "@ in local part"), ("!", "bang path")):
        if char in user:
            return name
    return ""
