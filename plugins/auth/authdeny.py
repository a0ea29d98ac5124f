"""auth/authdeny - the last auth plugin: nobody it is asked about authenticates.

Registers the generic `auth` hook, so EHLO offers PLAIN LOGIN CRAM-MD5 even when
the real auth plugins handle only some of them; every attempt that reaches it
fails with 535 (it is logged as "fail, cannot authenticate"). Useful as a
catch-all behind specific auth plugins, or to trap relay abusers.

Example config/plugins line (after the other auth plugins):  auth/authdeny
"""

from qpsmtpd_py.api import DECLINED, LOGWARN, Plugin


class AuthDeny(Plugin):
    arguments = ()

    def hook_auth(self, transaction, method, user, clear, digest, ticket):
        self.log(LOGWARN, f"fail, cannot authenticate {user}")
        return DECLINED, f"{user} is not free to abuse my relay"
