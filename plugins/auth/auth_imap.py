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

Success is OK; a refused login is DENY (535, no later auth plugin is asked); an
unreachable server is DENYSOFT (454).

Hooks: auth-plain, auth-login (IMAP LOGIN needs the clear-text password).

Example config/plugins line:  auth/auth_imap 127.0.0.1 143
"""

import imaplib
import socket
import ssl

from qpsmtpd_py.api import AuthUnavailable, RemoteLoginPlugin, login_arguments

MODES = ("auto", "starttls", "imaps", "none")


class AuthImap(RemoteLoginPlugin):
    implicit_tls_port = 993
    implicit_mode = "imaps"
    arguments = login_arguments(MODES, default_port=143, default_timeout=10)

    def connect(self):
        if self.mode == "imaps":
            return imaplib.IMAP4_SSL(self.host, self.port, ssl_context=self.ssl_context(),
                                     timeout=self.timeout)
        imap = imaplib.IMAP4(self.host, self.port, timeout=self.timeout)
        if self.mode == "starttls" or (self.mode == "auto" and "STARTTLS" in imap.capabilities):
            imap.starttls(ssl_context=self.ssl_context())
        return imap

    def check(self, user, password):
        try:
            imap = self.connect()
        except (OSError, imaplib.IMAP4.error, ssl.SSLError, socket.timeout) as exc:
            raise AuthUnavailable(f"could not connect to {self.where}: {exc}")
        try:
            imap.login(_quote(user), password)
        except imaplib.IMAP4.error:
            return False
        except (OSError, UnicodeError) as exc:
            raise AuthUnavailable(f"IMAP login at {self.where} failed: {exc.__class__.__name__}")
        finally:
            _logout(imap)
        return True


def _quote(text):
    """An IMAP quoted string (imaplib quotes the password but not the user name)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _logout(imap):
    try:
        imap.logout()
    except (OSError, imaplib.IMAP4.error):
        pass
