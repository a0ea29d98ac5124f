"""t_policy - test plugin: a policy check that refuses every client that is not
immune (relay client, whitelisted host or sender: Plugin.is_immune()).

Arguments:  HOOK [HOOK ...]   (connect, helo, ehlo, mail, rcpt, data ...)
Reply: DENY "t_policy refused at <hook>".
"""

from qpsmtpd_py import constants as C
from qpsmtpd_py.plugin import Plugin


class TPolicy(Plugin):
    def register(self, *args):
        if not args:
            raise ValueError("t_policy needs at least one hook name")
        for hook in args:
            self.register_hook(hook, self._make(hook))

    def _make(self, hook):
        def check(transaction, *args):
            if self.is_immune():
                return C.DECLINED
            return C.DENY, f"t_policy refused at {hook}"
        return check
