"""IDN - write internationalised domain names of the envelope as A-labels (punycode).

The sender and recipient domains are converted from Unicode (U-labels,
`bücher.example`) to their ASCII form (A-labels, `xn--bcher-kva.example`) with
IDNA 2008 and the UTS #46 mapping (the Python `idna` package), so that later
plugins (rcpthosts in rcpt_ok, badmailfrom, SPF ...), the queue and the next hop
all see the one ASCII spelling. The Unicode form is kept in the address note
`idn_unicode`. Local parts are not touched. Address literals and ASCII domains
are left alone. A domain that is not valid IDNA is left as it is and the reason
logged; the plugin never refuses anything.

The core accepts non-ASCII addresses only from clients that said EHLO and gave
SMTPUTF8 on MAIL (RFC 6531); other clients get `553 5.6.7` before any plugin
runs. So this plugin acts on SMTPUTF8 sessions: list your domains in rcpthosts in
their A-label form.

Hooks: mail, rcpt. Load it near the top of config/plugins, before the plugins
that look at domains.
Example config/plugins line:  IDN
"""

import idna

from qpsmtpd_py.api import DECLINED, LOGINFO, LOGWARN, Plugin


class IDN(Plugin):
    arguments = ()                # none but loglevel: anything else stops start-up

    def to_ascii(self, address, role):
        host = address.host
        if not host or host.isascii() or host.startswith("["):
            return
        try:
            ascii_host = idna.encode(host, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError) as exc:
            self.log(LOGWARN, f"{role} domain {host!r} is not a valid IDN ({exc}); left as it is")
            return
        address.notes["idn_unicode"] = host
        address.host = ascii_host
        self.log(LOGINFO, f"{role} domain {host} -> {ascii_host}")

    def hook_mail(self, transaction, sender, params=None):
        self.to_ascii(sender, "sender")
        return DECLINED

    def hook_rcpt(self, transaction, rcpt, params=None):
        self.to_ascii(rcpt, "recipient")
        return DECLINED
