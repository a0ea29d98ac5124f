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

from qpsmtpd_py.constants import DECLINED, DENYSOFT, LOGERROR, LOGINFO, OK
from qpsmtpd_py.plugin import Plugin


class AuthVpopmaild(Plugin):
    def register(self, *args):
        super().register(*args)
        self.host = self.args.get("host", "localhost")
        self.port = int(self.args.get("port", 89))
        self.timeout = float(self.args.get("timeout", 10))

    def hook_auth_plain(self, transaction, method, user, clear, digest, ticket):
        if any(ch.isspace() for ch in user + clear):
            self.log(LOGINFO, "fail, white space in user name or password")
            return DECLINED
        where = f"{self.host}:{self.port}"
        try:
            with socket.create_connection((self.host, self.port), timeout=self.timeout) as sock:
                reader = sock.makefile("rb")
                greeting = reader.readline(1024)
                if not greeting.startswith(b"+OK"):
                    self.log(LOGERROR, f"error, unexpected greeting from {where}")
                    return DENYSOFT, "auth_vpopmaild - daemon unavailable"
                sock.sendall(f"login {user} {clear}\r\n".encode())
                answer = reader.readline(1024)
                try:
                    sock.sendall(b"quit\r\n")
                except OSError:
                    pass
        except OSError as exc:
            self.log(LOGERROR, f"error, vpopmaild at {where}: {exc}")
            return DENYSOFT, "auth_vpopmaild - daemon unavailable"
        if answer.startswith(b"+OK"):
            self.log(LOGINFO, f"pass, {user}")
            return OK, "auth_vpopmaild"
        self.log(LOGINFO, f"fail, {user}")
        return DECLINED, "auth_vpopmaild"

    hook_auth_login = hook_auth_plain
