"""auth/auth_imap - SMTP AUTH by logging in to an IMAP server.

Arguments:

  auth/auth_imap HOST [PORT] [tls MODE] [ca FILE] [timeout SECONDS]

PORT defaults to 143; port 993 means implicit TLS (imaps). MODE:
  auto      (default) STARTTLS when the server offers it, else plain IMAP;
            on port 993 implicit TLS
  starttls  STARTTLS required
  imaps     implicit TLS
  none      plain IMAP (only for a server on the same host or a trusted net)
The server certificate is verified against the system CAs, or the CA file
`ca FILE`; `ca none` switches verification off (not recommended).

Success is OK (`auth_imap/<mech>`); a refused login is DENY ("auth_imap - invalid
password for <user> at <host:port>"); an unreachable server is DENYSOFT (454).

Hooks: auth-plain, auth-login (IMAP LOGIN needs the clear-text password).

Example config/plugins line:  auth/auth_imap 127.0.0.1 143
"""

import imaplib
import socket
import ssl

from qpsmtpd_py.constants import DENY, DENYSOFT, LOGERROR, LOGINFO, OK
from qpsmtpd_py.remote_login import RemoteLoginPlugin

MODES = ("auto", "starttls", "imaps", "none")


class AuthImap(RemoteLoginPlugin):
    default_port = 143
    implicit_tls_port = 993
    implicit_mode = "imaps"
    modes = MODES
    default_timeout = 10

    def connect(self):
        if self.mode == "imaps":
            return imaplib.IMAP4_SSL(self.host, self.port, ssl_context=self.ssl_context(),
                                     timeout=self.timeout)
        imap = imaplib.IMAP4(self.host, self.port, timeout=self.timeout)
        if self.mode == "starttls" or (self.mode == "auto" and "STARTTLS" in imap.capabilities):
            imap.starttls(ssl_context=self.ssl_context())
        return imap

    def hook_auth_plain(self, transaction, method, user, clear, digest, ticket):
        where = f"{self.host}:{self.port}"
        try:
            imap = self.connect()
        except (OSError, imaplib.IMAP4.error, ssl.SSLError, socket.timeout) as exc:
            self.log(LOGERROR, f"error, could not connect to {where}: {exc}")
            return DENYSOFT, f"auth_imap - could not connect to {where}"
        try:
            imap.login(_quote(user), clear)
        except imaplib.IMAP4.error:
            self.log(LOGINFO, f"fail, {user} at {where}")
            return DENY, f"auth_imap - invalid password for {user} at {where}"
        except (OSError, UnicodeError) as exc:
            self.log(LOGERROR, f"error, IMAP login at {where} failed: {exc.__class__.__name__}")
            return DENYSOFT, f"auth_imap - could not connect to {where}"
        finally:
            _logout(imap)
        self.log(LOGINFO, f"pass, {user} at {where}")
        return OK, f"auth_imap/{method}"

    hook_auth_login = hook_auth_plain


def _quote(text):
    """An IMAP quoted string (imaplib quotes the password but not the user name)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _logout(imap):
    try:
        imap.logout()
    except (OSError, imaplib.IMAP4.error):
        pass
