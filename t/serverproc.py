"""Real qpsmtpd-prefork / qpsmtpd-forkserver processes for the daemon tests.

    with Server("qpsmtpd-prefork", srv, "--children", "4") as server:
        c = server.client()                  # greeting read
        server.children()                    # {pid: process title}
        server.signal(signal.SIGHUP)

The server listens on 127.0.0.1:<free port>, runs as root with --allow-root
(tests run as root), logs to a file in the test's tmp dir, and is stopped (TERM,
then KILL) when the block ends.
"""

import os
import signal
import socket
import subprocess
import time

from harness import Client, bin_path, free_port

PLUGIN_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "plugins")


def wait_until(predicate, timeout=10.0, interval=0.02, what="condition"):
    """Poll until predicate() is truthy; returns its value or fails the test."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def children_of(pid):
    """{child pid: command line as ps shows it (the process title)}."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read().rsplit(b")", 1)[1].split()
            if int(stat[1]) != pid or stat[0] == b"Z":
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                title = fh.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        except (OSError, IndexError, ValueError):
            continue
        out[int(entry)] = title
    return out


def title_of(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return ""


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


class Server:
    def __init__(self, program, config, *args, port=None, listen=True, env=None,
                 allow_root=True, wait=True, pass_fds=(), command=None):
        self.config = config
        self.port = port or free_port()
        self.log_path = os.path.join(config.tmp, f"{program}.{self.port}.log")
        argv = [bin_path(program), "--config", config.dir]
        if allow_root:
            argv.append("--allow-root")
        if listen:
            argv += ["--listen-address", f"127.0.0.1:{self.port}"]
        argv += list(args)
        self.argv = command(argv) if command else argv
        self.log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self.log_file,
                                     stderr=subprocess.STDOUT, env=config.env(env),
                                     cwd=config.tmp, pass_fds=pass_fds)
        self.pid = self.proc.pid
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout=15):
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log}")
            return "master:" in title_of(self.pid)
        wait_until(ready, timeout, what="the master's process title")

    @property
    def log(self):
        with open(self.log_path, "rb") as fh:
            return fh.read().decode("utf-8", "replace")

    def client(self, read_greeting=True, timeout=20, host="127.0.0.1", port=None):
        return Client.connect(host, port or self.port, timeout=timeout, read_greeting=read_greeting)

    def children(self):
        return children_of(self.pid)

    def title(self):
        return title_of(self.pid)

    def signal(self, signum):
        os.kill(self.pid, signum)

    def wait_exit(self, timeout=20):
        return self.proc.wait(timeout=timeout)

    def stop(self):
        if self.proc.poll() is None:
            kids = list(self.children())
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                for pid in kids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def open_session(server, rcpt="u@example.test", ready_for_data=True):
    """A client that has said EHLO, MAIL and RCPT (and DATA if asked)."""
    c = server.client()
    assert c.code == 220, c.text
    c.greeting = c.text
    c.ehlo()
    assert c.cmd("MAIL FROM:<a@b.test>")[0] == 250
    assert c.cmd(f"RCPT TO:<{rcpt}>")[0] == 250
    if ready_for_data:
        assert c.cmd("DATA")[0] == 354
    return c


def finish_message(c, body="Subject: test\r\n\r\nhello\r\n"):
    c.send(body + ".\r\n")
    return c.read_reply()


def connect_refused(port, host="127.0.0.1"):
    try:
        socket.create_connection((host, port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return False
