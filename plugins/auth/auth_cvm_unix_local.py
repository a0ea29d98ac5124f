"""auth/auth_cvm_unix_local - SMTP AUTH through a CVM (Credential Validation
Module, Bruce Guenther's cvm) daemon on a unix socket, e.g. cvm-unix.

Arguments (key value pairs):
  cvm_socket    path of the CVM socket (required)
  enable_smtp   yes|no: allow on port 25 (default no)
  enable_ssmtp  yes|no: allow on SMTPS / port 465 (default yes)
  timeout       seconds (default 10)
Other ports (submission) are always allowed.

Protocol (cvm-v1): the request is the byte 1, then account\\0 domain\\0
password\\0 and a final \\0; the first byte of the answer is 0 for success, 100
for bad credentials (DENY) and anything else a temporary failure (DECLINED, as
qpsmtpd). "user@domain" is split at the @; the domain defaults to "localhost".

Hooks: auth-plain, auth-login.

Example config/plugins line:
  auth/auth_cvm_unix_local cvm_socket /var/lib/cvm/cvm-unix.socket enable_smtp no
"""

import socket

from qpsmtpd_py.constants import DECLINED, DENY, LOGERROR, LOGINFO, OK
from qpsmtpd_py.plugin import Plugin

SMTP_PORT, SSMTP_PORT = 25, 465


class AuthCvmUnixLocal(Plugin):
    def register(self, *args):
        super().register(*args)
        self.socket_path = self.args.get("cvm_socket")
        if not self.socket_path:
            raise ValueError("auth/auth_cvm_unix_local requires the cvm_socket argument")
        self.enable_smtp = str(self.args.get("enable_smtp", "no")).lower() == "yes"
        self.enable_ssmtp = str(self.args.get("enable_ssmtp", "yes")).lower() == "yes"
        self.timeout = float(self.args.get("timeout", 10))

    def enabled(self):
        conn = self.connection
        if conn.smtps or conn.local_port == SSMTP_PORT:
            return self.enable_ssmtp
        if conn.local_port == SMTP_PORT:
            return self.enable_smtp
        return True

    def hook_auth_plain(self, transaction, method, user, clear, digest, ticket):
        if not self.enabled():
            self.log(LOGINFO, f"skip, not enabled on port {self.connection.local_port}")
            return DECLINED
        account, _, domain = user.partition("@")
        request = b"\x01" + b"".join(part.encode() + b"\0"
                                     for part in (account, domain or "localhost", clear)) + b"\0"
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(self.socket_path)
                sock.sendall(request)
                sock.shutdown(socket.SHUT_WR)
                answer = sock.recv(1)
        except OSError as exc:
            self.log(LOGERROR, f"error, CVM socket {self.socket_path}: {exc}")
            return DECLINED, f"authcvm/{method}"
        if answer == b"\x00":
            self.log(LOGINFO, f"pass, {user}")
            return OK, f"authcvm/{method}"
        if answer == b"\x64":                    # 100: bad credentials
            self.log(LOGINFO, f"fail, {user}")
            return DENY, f"authcvm/{method}"
        self.log(LOGERROR, f"error, CVM answered {answer!r} for {user}")
        return DECLINED, f"authcvm/{method}"

    hook_auth_login = hook_auth_plain
