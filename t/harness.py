"""Test harness: a qpsmtpd config directory in a temp dir, and real server
processes spoken to over real sockets.

    srv = ConfigDir(tmp_path, plugins=["rcpt_ok", "queue/maildir {maildir}"])
    with srv.session() as c:            # `qpsmtpd` on one end of a socketpair
        assert c.code == 220
        c.ehlo("client.test")
        assert c.cmd("MAIL FROM:<a@b.test>")[0] == 250

Every config dir gets `dns_servers` pointing at the loopback test DNS server so no
query can leave the machine, `me` = mx.example.test, and its own `store_dir`.
"""

import os
import shutil
import socket
import subprocess
import sys
import time

BIN_DIR = os.path.dirname(sys.executable)
QPSMTPD = os.path.join(BIN_DIR, "qpsmtpd")
ME = "mx.example.test"
TEST_PLUGINS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "plugins")   # t/plugins
REAL_PLUGINS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "plugins")
PLUGIN_DIRS = [TEST_PLUGINS, REAL_PLUGINS]     # config `plugin_dirs`: test plugins, then ours
MAIL_PLUGINS = ("rcpt_ok", "queue/maildir {maildir}")


def bin_path(name):
    path = os.path.join(BIN_DIR, name)
    return path if os.path.exists(path) else shutil.which(name)


def service_env(name):
    """A QPT_* variable from t/services; under CI=true a missing one fails the test."""
    import pytest
    value = os.environ.get(name)
    if not value:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is not set: the test service is missing (t/services)")
        pytest.skip(f"{name} not set (run through scripts/test)")
    return value


class ConfigDir:
    """A config directory; `plugins` lines may use {maildir}, {dir} placeholders."""

    def __init__(self, tmp_path, plugins=(), files=None, me=ME):
        self.dir = str(tmp_path / "config")
        self.maildir = str(tmp_path / "Maildir")
        self.tmp = str(tmp_path)
        os.makedirs(self.dir, exist_ok=True)
        self.write("me", me)
        self.write("dns_servers", f"127.0.0.1:{os.environ.get('QPT_DNS_PORT', '5353')}")
        self.write("dns_timeout", "2")
        self.write("spool_dir", os.path.join(self.tmp, "spool"))
        # the shared store (AUTH failures per IP, stateful plugins) of this test only
        self.write("store_dir", os.path.join(self.tmp, "store"))
        self.set_plugins(plugins)
        for name, content in (files or {}).items():
            self.write(name, content)

    def fmt(self, text):
        return text.format(maildir=self.maildir, dir=self.dir, tmp=self.tmp)

    def set_plugins(self, lines):
        self.write("plugins", "\n".join(self.fmt(line) for line in lines))

    def write(self, name, content):
        path = os.path.join(self.dir, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if isinstance(content, (list, tuple)):
            content = "\n".join(content)
        mode = "wb" if isinstance(content, bytes) else "w"
        with open(path, mode) as fh:
            fh.write(content if isinstance(content, bytes) or content.endswith("\n") else content + "\n")
        return path

    def env(self, extra=None):
        env = dict(os.environ)
        env["QPSMTPD_CONFIG"] = self.dir
        for key in ("TCPREMOTEIP", "TCPREMOTEHOST", "TCPREMOTEINFO", "TCPLOCALIP",
                    "TCPLOCALPORT", "RELAYCLIENT", "WHITELISTCLIENT", "RBLSMTPD"):
            env.pop(key, None)
        env.setdefault("TCPREMOTEIP", "192.0.2.10")
        env.update(extra or {})
        return env

    def session(self, env=None, args=(), read_greeting=True, timeout=20):
        """Start `qpsmtpd` (single-connection mode) on a socketpair."""
        ours, theirs = socket.socketpair()
        proc = subprocess.Popen([QPSMTPD, *args], stdin=theirs, stdout=theirs,
                                stderr=subprocess.PIPE, env=self.env(env), cwd=self.tmp)
        theirs.close()
        client = Client(ours, proc, timeout=timeout)
        if read_greeting:
            client.read_reply()
        return client

    def messages(self, maildir=None):
        """Delivered messages (bytes), oldest first."""
        new = os.path.join(maildir or self.maildir, "new")
        if not os.path.isdir(new):
            return []
        names = sorted(os.listdir(new), key=lambda n: os.stat(os.path.join(new, n)).st_mtime_ns)
        out = []
        for name in names:
            with open(os.path.join(new, name), "rb") as fh:
                out.append(fh.read())
        return out


class Client:
    """A minimal SMTP client that keeps the raw replies for assertions."""

    def __init__(self, sock, proc=None, timeout=20):
        self.sock = sock
        self.proc = proc
        self.sock.settimeout(timeout)
        self.buf = b""
        self.code = None
        self.lines = []
        self._stderr = None

    @classmethod
    def connect(cls, host, port, timeout=20, read_greeting=True):
        sock = socket.create_connection((host, port), timeout=timeout)
        client = cls(sock, None, timeout)
        if read_greeting:
            client.read_reply()
        return client

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        self.sock.sendall(data)

    def _readline(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"connection closed; partial data {self.buf!r}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line + b"\n"

    def read_reply(self):
        """(code, [text lines]) of one (multi-line) reply; raw lines kept in .raw."""
        self.lines, self.raw = [], []
        while True:
            line = self._readline()
            self.raw.append(line)
            text = line.decode("utf-8", "surrogateescape").rstrip("\r\n")
            self.code = int(text[:3])
            self.lines.append(text[4:])
            if text[3:4] != "-":
                return self.code, self.lines

    @property
    def text(self):
        return "\n".join(self.lines)

    def cmd(self, line):
        """Send one command line (CRLF added); returns (code, joined text)."""
        self.send(line + "\r\n")
        code, lines = self.read_reply()
        return code, "\n".join(lines)

    def ehlo(self, host="client.example.test"):
        code, text = self.cmd(f"EHLO {host}")
        assert code == 250, text
        return text.split("\n")[1:]

    def send_message(self, sender, recipients, body, ehlo=True):
        """MAIL, RCPT..., DATA, body (a str with \\n line ends, dot-stuffed here);
        returns the final (code, text)."""
        if ehlo:
            self.ehlo()
        code, text = self.cmd(f"MAIL FROM:<{sender}>")
        assert code == 250, text
        for rcpt in recipients:
            code, text = self.cmd(f"RCPT TO:<{rcpt}>")
            assert code == 250, text
        code, text = self.cmd("DATA")
        assert code == 354, text
        lines = body.split("\n")
        wire = "".join(("." + l if l.startswith(".") else l) + "\r\n" for l in lines)
        self.send(wire + ".\r\n")
        return self.read_reply()[0], self.text

    def closed(self, timeout=5):
        """True when the server has closed the connection (EOF)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
                self.buf += data
        except socket.timeout:
            return False
        except OSError:
            return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
        if self.proc is not None:
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    @property
    def stderr(self):
        """Everything the server logged (waits for the process to end)."""
        if self._stderr is None and self.proc is not None:
            self.close()
            self._stderr = self.proc.stderr.read().decode("utf-8", "replace")
            self.proc.stderr.close()
        return self._stderr or ""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        if self.proc is not None and self.proc.stderr and not self.proc.stderr.closed:
            self._stderr = self.proc.stderr.read().decode("utf-8", "replace")
            self.proc.stderr.close()


def mail_server_config(make_config, *lines, plugins=None, files=None, final=MAIL_PLUGINS, **kw):
    """The config of a server that takes mail for example.test (conftest's
    mail_config fixture; test modules with their own factory call this): the plugin
    lines, then `final` (rcpt_ok and a Maildir queue), or `plugins=[...]` as the
    whole list; `plugin_dirs` finds t/plugins before ours; `rcpthosts` is
    example.test. `files` add to or replace these files."""
    base = {"plugin_dirs": PLUGIN_DIRS, "rcpthosts": "example.test"}
    base.update(files or {})
    plugins = [*lines, *final] if plugins is None else list(plugins)
    return make_config(plugins=plugins, files=base, **kw)


def wait_for_port(host, port, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
