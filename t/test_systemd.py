"""systemd integration: unit files, the notify protocol, watchdog, socket activation."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from harness import BIN_DIR
from tools import require_tool
from serverproc import Server, wait_until

UNIT_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "systemd")
UNITS = ("qpsmtpd-prefork.service", "qpsmtpd-forkserver.service", "qpsmtpd.socket",
         "qpsmtpd@.service", "qpsmtpd-prefork.socket")
FILES = {"rcpthosts": "example.test", "loglevel": "6"}


def test_units_pass_systemd_analyze_verify(tmp_path):
    require_tool("systemd-analyze")
    tool = shutil.which("systemd-analyze")
    assert sorted(os.listdir(UNIT_DIR)) == sorted(UNITS)
    paths = []
    for name in UNITS:
        with open(os.path.join(UNIT_DIR, name)) as fh:
            text = fh.read()
        # verify checks that ExecStart exists: point it at this checkout's scripts
        (tmp_path / name).write_text(text.replace("/usr/local/bin/", BIN_DIR + "/"))
        paths.append(str(tmp_path / name))
    # verify runs `man` for the man: links of Documentation=: our pages, not Debian's Perl ones
    subprocess.run([os.path.join(BIN_DIR, "qpsmtpd-man"), "-q", str(tmp_path / "man")], check=True)
    env = {**os.environ, "MANPATH": str(tmp_path / "man")}
    result = subprocess.run([tool, "verify", *paths], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), \
        result.stdout + result.stderr


@pytest.mark.parametrize("name", ["qpsmtpd-prefork.service", "qpsmtpd-forkserver.service"])
def test_daemon_units_are_notify_type_and_hardened(name):
    with open(os.path.join(UNIT_DIR, name)) as fh:
        lines = {line.split("=", 1)[0]: line.split("=", 1)[1].strip()
                 for line in fh.read().splitlines() if "=" in line and not line.startswith("#")}
    assert lines["Type"] == "notify" and lines["ExecReload"] == "/bin/kill -HUP $MAINPID"
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes",
                       "ProtectHome": "yes", "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
                       "AmbientCapabilities": "CAP_NET_BIND_SERVICE"}.items():
        assert lines[key] == value, key
    assert "WatchdogSec" in lines and "ReadWritePaths" in lines


class NotifySocket:
    """The AF_UNIX datagram socket systemd would listen on (NOTIFY_SOCKET)."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.messages = []

    def collect(self, timeout=0.2):
        self.sock.settimeout(timeout)
        try:
            while True:
                self.messages.append(self.sock.recv(4096).decode())
        except socket.timeout:
            pass
        return self.messages

    def wait_for(self, field, timeout=10):
        """The first message (after those already matched) that has the line `field`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for index, message in enumerate(self.messages):
                if field in message.split("\n"):
                    del self.messages[:index + 1]
                    return dict(line.split("=", 1) for line in message.split("\n"))
            self.collect(0.1)
        raise AssertionError(f"no {field} in {self.messages}")

    def close(self):
        self.sock.close()


@pytest.mark.parametrize("program", ["qpsmtpd-prefork", "qpsmtpd-forkserver"])
def test_notify_ready_status_reloading_stopping(make_config, tmp_path, program):
    srv = make_config(files=FILES)
    notify = NotifySocket(str(tmp_path / "notify"))
    try:
        with Server(program, srv, "--children" if program.endswith("prefork") else "-c", "3",
                    env={"NOTIFY_SOCKET": notify.path}) as server:
            ready = notify.wait_for("READY=1")
            assert ready["STATUS"] == ("3 children, 0 busy, 3 idle" if program.endswith("prefork")
                                       else "0 of 3 connections")
            with server.client() as c:
                status = "1 busy" if program.endswith("prefork") else "1 of 3 connections"
                wait_until(lambda: any(status in m for m in notify.collect()), what="busy status")
                c.cmd("QUIT")
            server.signal(signal.SIGHUP)
            reloading = notify.wait_for("RELOADING=1")
            usec = int(reloading["MONOTONIC_USEC"])
            assert abs(usec / 1e6 - time.clock_gettime(time.CLOCK_MONOTONIC)) < 10
            notify.wait_for("READY=1")
            server.signal(signal.SIGTERM)
            notify.wait_for("STOPPING=1")
            assert server.wait_exit(10) == 0
    finally:
        notify.close()


def test_watchdog_pings_at_half_the_interval(make_config, tmp_path):
    srv = make_config(files=FILES)
    notify = NotifySocket(str(tmp_path / "notify"))
    try:
        with Server("qpsmtpd-prefork", srv, "--children", "1",
                    env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000"}):
            notify.wait_for("READY=1")
            started = time.monotonic()
            notify.wait_for("WATCHDOG=1")
            notify.wait_for("WATCHDOG=1")
            notify.wait_for("WATCHDOG=1")
            assert time.monotonic() - started < 1.5
    finally:
        notify.close()


def activated(fd, names=None):
    """Wrap argv so the server starts with `fd` as descriptor 3 and LISTEN_PID set
    to its own pid, as systemd does (exec keeps the pid)."""
    def wrap(argv):
        code = ("import os, sys\n"
                f"fd = {fd}\n"
                "if fd != 3:\n    os.dup2(fd, 3)\n    os.close(fd)\n"
                "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1')\n"
                + (f"os.environ['LISTEN_FDNAMES'] = {names!r}\n" if names else "")
                + "os.execv(sys.argv[1], sys.argv[1:])\n")
        return [sys.executable, "-c", code, *argv]
    return wrap


@pytest.mark.parametrize("program", ["qpsmtpd-prefork", "qpsmtpd-forkserver"])
def test_socket_activation_with_listen_fds(make_config, program):
    srv = make_config(files=FILES)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    with Server(program, srv, listen=False, port=port, pass_fds=[listener.fileno()],
                command=activated(listener.fileno())) as server:
        listener.close()                        # the server holds the only copy now
        with server.client() as c:
            assert c.code == 220
            assert c.send_message("a@b.test", ["u@example.test"], "Subject: x\n\nactivated")[0] == 250
        assert f"listening on 127.0.0.1:{port}" in server.log
        assert len(srv.messages()) == 1


def test_socket_activation_smtps_by_name(make_config):
    srv = make_config(files=FILES)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    with Server("qpsmtpd-forkserver", srv, listen=False, port=port, pass_fds=[listener.fileno()],
                command=activated(listener.fileno(), names="smtps")) as server:
        listener.close()
        assert f"listening on 127.0.0.1:{port} (smtps)" in server.log
        with server.client(read_greeting=False) as c:
            assert c.closed() and not c.buf          # no tls plugin: no clear-text greeting


def test_listen_pid_of_another_process_is_ignored(make_config):
    srv = make_config(files=FILES)
    with Server("qpsmtpd-forkserver", srv, env={"LISTEN_PID": "1", "LISTEN_FDS": "1"}) as server:
        with server.client() as c:
            assert c.code == 220
