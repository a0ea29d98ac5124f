"""auth/authpam - SMTP AUTH through PAM (Linux-PAM, via python-pam).

Arguments: the PAM service name, as a single word or as `pam_service NAME`
(default `smtp`); optional `timeout` is not needed: use `nodelay` in the PAM
stack so a wrong password does not hold the connection for 2 seconds.

  /etc/pam.d/qpsmtpd:
    auth    required pam_unix.so nodelay
    account required pam_unix.so

pam_unix can check other users' passwords only as root (or in group shadow);
pam_pwdfile works as any user who can read its file. The PAM `account` phase
(expired or locked accounts) is checked too.

Hooks: auth-plain, auth-login. Success is OK; a failure is DECLINED so a later
auth plugin may try.

Example config/plugins line:  auth/authpam qpsmtpd
"""

import pam

from qpsmtpd_py.constants import DECLINED, LOGINFO, OK
from qpsmtpd_py.plugin import Plugin


class AuthPAM(Plugin):
    def register(self, *args):
        super().register(*args)
        if len(args) == 1:
            self.service = args[0]
        else:
            self.service = self.args.get("pam_service", "smtp")

    def hook_auth_plain(self, transaction, method, user, clear, digest, ticket):
        checker = pam.pam()
        if checker.authenticate(user, clear, service=self.service, resetcreds=False):
            self.log(LOGINFO, f"pass, {user} (PAM service {self.service})")
            return OK, "authpam"
        self.log(LOGINFO, f"fail, {user} (PAM service {self.service}): {checker.reason}")
        return DECLINED, "authpam"

    hook_auth_login = hook_auth_plain
