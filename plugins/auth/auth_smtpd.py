"""auth/auth_smtpd - SMTP AUTH by trying the credentials on another SMTP server.

Arguments:

  auth/auth_smtpd HOST [PORT] [tls MODE] [ca FILE] [timeout SECONDS]

PORT defaults to 587; port 465 means implicit TLS. MODE:
  auto      (default) STARTTLS when the server offers it, else plain SMTP
  starttls  STARTTLS required      smtps  implicit TLS      none  plain SMTP
The upstream certificate is verified (system CAs, or `ca FILE`; `ca none`
switches verification off). The plugin says EHLO, STARTTLS as configured, then
AUTH PLAIN (LOGIN if that is all the server offers) and QUIT.

235 from the server is OK; 535 (or any 5xx) is DECLINED (a later auth plugin may
try); an unreachable server or a 4xx is DENYSOFT (454 to the client).

Hooks: auth-plain, auth-login.

Example config/plugins line:  auth/auth_smtpd mail.example.com 587
"""

import smtplib
import socket
import ssl

from qpsmtpd_py.api import DECLINED, AuthUnavailable, RemoteLoginPlugin, login_arguments

MODES = ("auto", "starttls", "smtps", "none")


class AuthSmtpd(RemoteLoginPlugin):
    implicit_tls_port = 465
    implicit_mode = "smtps"
    arguments = login_arguments(MODES, default_port=587, default_timeout=15)
    wrong_password = DECLINED

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

    def check(self, user, password):
        try:
            smtp = self.connect()
        except (OSError, smtplib.SMTPException, ssl.SSLError, socket.timeout) as exc:
            raise AuthUnavailable(f"could not connect to {self.where}: {exc}")
        try:
            offered = (smtp.esmtp_features.get("auth") or "").upper().split()
            mech = "PLAIN" if "PLAIN" in offered or "LOGIN" not in offered else "LOGIN"
            smtp.user, smtp.password = user, password
            authobject = smtp.auth_plain if mech == "PLAIN" else smtp.auth_login
            code, _ = smtp.auth(mech, authobject)
        except smtplib.SMTPAuthenticationError as exc:
            code = exc.smtp_code
        except (OSError, smtplib.SMTPException, UnicodeError) as exc:
            raise AuthUnavailable(f"AUTH at {self.where} failed: {exc.__class__.__name__}")
        finally:
            smtp.password = None
            _quit(smtp)
        if 400 <= code < 500:
            raise AuthUnavailable(f"{self.where} answered {code} (temporary failure)")
        return code == 235


def _quit(smtp):
    try:
        smtp.quit()
    except (OSError, smtplib.SMTPException):
        smtp.close()
