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

from qpsmtpd_py.api import LOGERROR, AuthPlugin, Bool, Keyword, Number, Path

SMTP_PORT, SSMTP_PORT = 25, 465


class AuthCvmUnixLocal(AuthPlugin):
    arguments = (
        Keyword("cvm_socket", Path(), None, "path of the CVM socket", required=True),
        Keyword("enable_smtp", Bool(), False, "allow AUTH on port 25"),
        Keyword("enable_ssmtp", Bool(), True, "allow AUTH on SMTPS / port 465"),
        Keyword("timeout", Number(min=0.1, unit="seconds"), 10.0, "for the whole exchange"),
    )

    def skip_reason(self):
        conn = self.connection
        if conn.smtps or conn.local_port == SSMTP_PORT:
            enabled = self.args["enable_ssmtp"]
        else:
            enabled = conn.local_port != SMTP_PORT or self.args["enable_smtp"]
        return None if enabled else f"not enabled on port {conn.local_port}"

    def check(self, user, password):
        account, _, domain = user.partition("@")
        request = b"\x01" + b"".join(part.encode() + b"\0"
                                     for part in (account, domain or "localhost", password)) + b"\0"
        path = self.args["cvm_socket"]
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.args["timeout"])
                sock.connect(path)
                sock.sendall(request)
                sock.shutdown(socket.SHUT_WR)
                answer = sock.recv(1)
        except OSError as exc:
            self.log(LOGERROR, f"error, CVM socket {path}: {exc}")
            return None                      # as qpsmtpd: a later auth plugin may try
        if answer in (b"\x00", b"\x64"):      # 0: success, 100: bad credentials
            return answer == b"\x00"
        self.log(LOGERROR, f"error, CVM answered {answer!r} for {user}")
        return None
