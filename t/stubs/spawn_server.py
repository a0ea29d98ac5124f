"""A TCP listener that runs one `qpsmtpd` process per accepted connection, with the
socket as its stdin/stdout (what tcpserver or inetd do), so real clients (swaks,
smtplib, openssl s_client) can talk to the real server.

    with SpawnServer(cfg, args=["--smtps"]) as srv:
        subprocess.run(["swaks", "--server", f"127.0.0.1:{srv.port}", ...])
    srv.stderr   # everything the server processes logged
"""

import os
import socket
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))

from harness import QPSMTPD  # noqa: E402


class SpawnServer:
    def __init__(self, config, args=(), env=None):
        self.config = config
        self.args = list(args)
        self.env = config.env(env)
        for key in ("TCPREMOTEIP", "TCPLOCALPORT", "TCPLOCALIP"):
            if not (env or {}).get(key):
                self.env.pop(key, None)          # taken from the real socket
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.log = tempfile.TemporaryFile()
        self.procs = []
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            proc = subprocess.Popen([QPSMTPD, *self.args], stdin=conn, stdout=conn,
                                    stderr=self.log, env=self.env, cwd=self.config.tmp)
            conn.close()
            self.procs.append(proc)

    def __enter__(self):
        self.thread.start()
        return self

    def stop(self):
        try:
            self.listener.shutdown(socket.SHUT_RDWR)     # wakes the accept() (Linux)
        except OSError:
            pass
        self.listener.close()
        self.thread.join(5)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def __exit__(self, *exc):
        self.stop()

    @property
    def stderr(self):
        """The servers' log so far (wait for the sessions first: stop() or a QUIT)."""
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")
