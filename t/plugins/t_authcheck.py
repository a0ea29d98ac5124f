"""t_authcheck - test plugin for the AuthPlugin base: a backend that checks.

Arguments: `user:password` words; unknown users are not this plugin's (None).
`declined` makes a wrong password DECLINED instead of DENY.
"""

from qpsmtpd_py.api import DECLINED, DENY, AuthPlugin


class TAuthCheck(AuthPlugin):
    def register(self, *words):
        self.users = dict(w.split(":", 1) for w in words if ":" in w)
        self.wrong_password = DECLINED if "declined" in words else DENY

    def check(self, user, password):
        if user not in self.users:
            return None
        return self.users[user] == password
