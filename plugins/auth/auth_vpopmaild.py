"""auth/auth_vpopmaild - SMTP AUTH against vpopmail's vpopmaild daemon.

Arguments (key value pairs): `host` (default localhost), `port` (default 89),
`timeout` (seconds, default 10).

The plugin connects, expects the `+OK` greeting, sends `login <user> <password>`
and accepts a reply starting with `+OK`. The protocol separates words with
spaces, so a user name or password containing white space is refused here
(DECLINED) rather than sent. A refused login is DECLINED, an unreachable daemon
DENYSOFT (454).

Hooks: auth-plain, auth-login.

Example config/plugins line:  auth/auth_vpopmaild host 127.0.0.1 port 89
"""

import socket

from qpsmtpd_py.api import DECLINED, AuthPlugin, AuthUnavailable, Int, Keyword, Number, Text


class AuthVpopmaild(AuthPlugin):
    arguments = (
        Keyword("host", Text(), "localhost", "where vpopmaild listens"),
        Keyword("port", Int(min=1, max=65535), 89, "its port"),
        Keyword("timeout", Number(min=0.1, unit="seconds"), 10.0, "for connecting and each answer"),
    )
    wrong_password = DECLINED

    def check(self, user, password):
        if any(ch.isspace() for ch in user + password):
            return None                      # the protocol cannot carry it; never sent
        host, port = self.args["host"], self.args["port"]
        try:
            with socket.create_connection((host, port), timeout=self.args["timeout"]) as sock:
                reader = sock.makefile("rb")
                if not reader.readline(1024).startswith(b"+OK"):
                    raise AuthUnavailable(f"unexpected greeting from {host}:{port}")
                sock.sendall(f"login {user} {password}\r\n".encode())
                answer = reader.readline(1024)
                try:
                    sock.sendall(b"quit\r\n")
                except OSError:
                    pass
        except OSError as exc:
            raise AuthUnavailable(f"vpopmaild at {host}:{port}: {exc}")
        return answer.startswith(b"+OK")
