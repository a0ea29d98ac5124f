"""auth/authpam - SMTP AUTH through PAM (Linux-PAM, via python-pam).

Arguments: the PAM service name, as a single word or as `pam_service NAME`
(default `smtp`). There is no time-out argument: put `nodelay` in the PAM stack
so a wrong password does not hold the connection for 2 seconds.

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

from qpsmtpd_py.api import DECLINED, LOGDEBUG, AuthPlugin, Positional, Text, require_extra

pam = require_extra("pam", "python-pam", "pam", "python3-pam", "auth/authpam")


class AuthPAM(AuthPlugin):
    arguments = (Positional("pam_service", Text(), "smtp", "the PAM service name", keyword=True),)
    wrong_password = DECLINED

    def check(self, user, password):
        checker = pam.pam()
        service = self.args["pam_service"]
        if checker.authenticate(user, password, service=service, resetcreds=False):
            return True
        self.log(LOGDEBUG, f"PAM service {service}: {checker.reason}")
        return False
