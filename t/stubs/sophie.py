"""Stand-in for the Sophie daemon (Sophos SAVI on a unix socket): a client writes a
file path and a newline; Sophie answers `0` (clean), `1:NAME[,NAME]` (infected) or
`-1:REASON` (error) and closes. Runs as a thread in the test process.

    sophie = SophieStub(path)      # listening at path
    sophie.requests                # the paths it was asked to scan
    sophie.close()
"""

import os
import socket
import sys

from .acceptor import serve_in_threads

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "scanners"))
import _detect  # noqa: E402


class SophieStub:
    def __init__(self, path, silent=False):
        self.path = path
        self.silent = silent
        self.requests = []
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(path)
        self.sock.listen(8)
        self.conns = []
        serve_in_threads(self.sock, self.answer, self.conns)

    def answer(self, conn):
        data = b""
        while not data.endswith(b"\n"):
            chunk = conn.recv(4096)
            if not chunk:
                return
            data += chunk
        path = data.decode().strip()
        self.requests.append(path)
        if self.silent:
            return
        try:
            names, _ = _detect.scan(path)
            reply = f"1:{','.join(names)}" if names else "0"
        except OSError as exc:
            reply = f"-1:{exc.strerror}"
        conn.sendall(reply.encode())
        conn.close()

    def close(self):
        self.sock.close()
        for conn in self.conns:
            conn.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass
