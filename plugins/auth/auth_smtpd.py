"""auth/auth_smtpd - SMTP AUTH by trying the credentials on another SMTP server.

Arguments:

  auth/auth_smtpd HOST [PORT] [tls MODE] [ca FILE] [timeout SECONDS]

PORT defaults to 587; port 465 means implicit TLS. MODE:
  auto      (default) STARTTLS when the server offers it, else plain SMTP
  starttls  STARTTLS required      smtps  implicit TLS      none  plain SMTP
The upstream certificate is verified (system CAs, or `ca FILE`; `ca none`
switches verification off). The plugin says EHLO, STARTTLS as configured, then
AUTH PLAIN (LOGIN if that is all the server offers) and QUIT.

235 from the server is OK; 535 (or any 5xx) is DECLINED; an unreachable server or
a 4xx is DENYSOFT (454 to the client).

Hooks: auth-plain, auth-login.

Example config/plugins line:  auth/auth_smtpd mail.example.com 587
"""

import smtplib
import socket
import ssl

from qpsmtpd_py.constants import DECLINED, DENYSOFT, LOGERROR, LOGINFO, OK
from qpsmtpd_py.remote_login import RemoteLoginPlugin

MODES = ("auto", "starttls", "smtps", "none")


class AuthSmtpd(RemoteLoginPlugin):
    default_port = 587
    implicit_tls_port = 465
    implicit_mode = "smtps"
    modes = MODES
    default_timeout = 15

    def connect(self):
        me = self.app.me
        if self.mode == "smtps":
            smtp = smtplib.SMTP_SSL(self.host, self.port, local_hostname=me, timeout=self.timeout,
                                    context=self.ssl_context())
        else:
            smtp = smtplib.SMTP(self.host, self.port, local_hostname=me, timeout=self.timeout)
        smtp.ehlo()
        if self.mode == "starttls" or (self.mode == "auto" and smtp.has_extn("starttls")):
            smtp.starttls(context=self.ssl_context())
            smtp.ehlo()
        return smtp

    def hook_auth_plain(self, transaction, method, user, clear, digest, ticket):
        where = f"{self.host}:{self.port}"
        try:
            smtp = self.connect()
        except (OSError, smtplib.SMTPException, ssl.SSLError, socket.timeout) as exc:
            self.log(LOGERROR, f"error, could not connect to {where}: {exc}")
            return DENYSOFT, f"auth_smtpd - could not connect to {where}"
        try:
            offered = (smtp.esmtp_features.get("auth") or "").upper().split()
            mech = "PLAIN" if "PLAIN" in offered or "LOGIN" not in offered else "LOGIN"
            smtp.user, smtp.password = user, clear
            authobject = smtp.auth_plain if mech == "PLAIN" else smtp.auth_login
            code, _ = smtp.auth(mech, authobject)
        except smtplib.SMTPAuthenticationError as exc:
            code = exc.smtp_code
        except (OSError, smtplib.SMTPException, UnicodeError) as exc:
            self.log(LOGERROR, f"error, AUTH at {where} failed: {exc.__class__.__name__}")
            return DENYSOFT, f"auth_smtpd - could not authenticate at {where}"
        finally:
            smtp.password = None
            _quit(smtp)
        if code == 235:
            self.log(LOGINFO, f"pass, {user} at {where}")
            return OK, f"auth_smtpd/{method}"
        if 400 <= code < 500:
            self.log(LOGINFO, f"error, {where} answered {code} for {user}")
            return DENYSOFT, f"auth_smtpd - temporary failure at {where}"
        self.log(LOGINFO, f"fail, {user} at {where} ({code})")
        return DECLINED, "auth_smtpd"

    hook_auth_login = hook_auth_plain


def _quit(smtp):
    try:
        smtp.quit()
    except (OSError, smtplib.SMTPException):
        smtp.close()
