"""Shared pieces of the issue 16 campaigns that run outside tools against a real
server (nmap, testssl.sh) or kill services under it: the sample config of etc/
copied into the test's tmp dir, and ports from a fixed range (QPT_PORT_RANGE,
default 23000-23999) so a private service never lands on another's port."""

import os
import shutil
import socket

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PORT_RANGE = tuple(int(p) for p in os.environ.get("QPT_PORT_RANGE", "23000-23999").split("-"))
_next = [PORT_RANGE[0] + os.getpid() % max(1, PORT_RANGE[1] - PORT_RANGE[0])]


def ranged_port():
    """A TCP and UDP port of PORT_RANGE that nothing listens on now."""
    low, high = PORT_RANGE
    for _ in range(high - low + 1):
        port = _next[0]
        _next[0] = low + (port + 1 - low) % (high - low + 1)
        try:
            with socket.socket() as t, socket.socket(type=socket.SOCK_DGRAM) as u:
                t.bind(("127.0.0.1", port))
                u.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
    raise RuntimeError(f"no free port in {low}-{high}")


class SampleConfig:
    """etc/ copied to tmp/etc (its relative paths then point into tmp: ../maildir,
    ../var/spool); quacks like harness.ConfigDir for serverproc.Server."""

    def __init__(self, tmp_path, files=None):
        self.tmp = str(tmp_path)
        self.dir = os.path.join(self.tmp, "etc")
        shutil.copytree(os.path.join(ROOT, "etc"), self.dir)
        self.maildir = os.path.join(self.tmp, "maildir")
        for name, content in (files or {}).items():
            self.write(name, content)

    def write(self, name, content):
        path = os.path.join(self.dir, name)
        with open(path, "w") as fh:
            fh.write(content if content.endswith("\n") else content + "\n")
        return path

    def append(self, name, content):
        with open(os.path.join(self.dir, name), "a") as fh:
            fh.write(content + "\n")

    def env(self, extra=None):
        env = dict(os.environ)
        env["QPSMTPD_CONFIG"] = self.dir
        env.update(extra or {})
        return env
