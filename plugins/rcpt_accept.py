"""rcpt_accept - accept every recipient (catch-all; test servers).

DANGER: loaded on its own this makes the server an OPEN RELAY: any client may
send mail to any address in the world through it. Use it only

  * after plugins that DENY every address you do not want (for example
    aliases_check, check_goodrcptto, rcpt_map or relay's `only 1`), so it merely
    turns their DECLINED into the OK that qpsmtpd needs to accept a recipient, or
  * on a closed test or sink server that no stranger can reach.

This is Peter J. Holzer's "always OK" recipient plugin, once also called rcpt_ok;
the distribution's rcpt_ok (rcpthosts check) took that name.

Arguments: none.  Hooks: rcpt (always OK: `250 <addr>, recipient ok`).
Example config/plugins lines:
  aliases_check
  rcpt_accept
"""

from qpsmtpd_py.api import LOGINFO, OK, Plugin


class RcptAccept(Plugin):
    arguments = ()                # none but loglevel: anything else stops start-up

    def hook_rcpt(self, transaction, rcpt, params=None):
        self.log(LOGINFO, f"pass, {rcpt} accepted unconditionally")
        return OK
