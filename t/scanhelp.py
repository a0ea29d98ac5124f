"""Helpers shared by the content-scanner tests (spamassassin, clamdscan, clamav, the
vendor scanners, milter): test messages, one SMTP transaction in-process, a silent
scanner, and a proxy in front of the shared daemons that a test may kill mid-scan
(the shared spamd/clamd in /tmp/qpt-state are never stopped)."""

import base64
import email.utils
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from inproc import message_wire
from stubs.acceptor import serve_in_threads

HERE = os.path.dirname(os.path.abspath(__file__))
STUBS = os.path.join(HERE, "stubs")
EICAR = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
HEADER = ("From: Alice <a@b.test>\nTo: u@example.test\nSubject: test\n"
          f"Date: {email.utils.formatdate()}\nMessage-Id: <20260101.4711.alice@b.test>\n")


def plugin_server(session_server, plugin):
    """make(args, files=None): a session_server running `plugin args` at loglevel 6
    (the scanner tests read the plugin's log lines)."""
    def make(args, files=None):
        return session_server(f"{plugin} {args}", files={"loglevel": "6", **(files or {})})
    return make


def message(body, header=HEADER):
    return header + "\n" + body


def attachment_message(payload, filename="eicar.com", text="see the attachment"):
    """A multipart/mixed message with `payload` (str) as a base64 attachment."""
    encoded = base64.encodebytes(payload.encode()).decode()
    return message(
        "This is a multi-part message in MIME format.\n"
        "--XYZ\nContent-Type: text/plain; charset=us-ascii\n\n" + text + "\n"
        f"--XYZ\nContent-Type: application/octet-stream; name=\"{filename}\"\n"
        "Content-Transfer-Encoding: base64\n"
        f"Content-Disposition: attachment; filename=\"{filename}\"\n\n"
        + encoded + "--XYZ--\n",
        HEADER + "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"XYZ\"\n")


def transaction(text, sender="a@b.test", recipients=("u@example.test",), helo="client.test"):
    """The client script of one message: HELO, MAIL, RCPT..., DATA, the message, QUIT."""
    return [f"HELO {helo}", f"MAIL FROM:<{sender}>",
            *[f"RCPT TO:<{r}>" for r in recipients], "DATA", message_wire(text), "QUIT"]


def data_reply(dialogue):
    """(code, text) of the reply to the message (after the 354)."""
    codes = dialogue.codes
    index = codes.index(354) + 1
    return dialogue.replies[index].code, dialogue.replies[index].text


def header_of(captured):
    """{lower-case name: [values]} of a t_capture message."""
    from qpsmtpd_py.header import Header
    fields = {}
    for name, value in Header.parse(captured["header"]):
        fields.setdefault(name.lower(), []).append(str(value))
    return fields


class SilentServer:
    """A loopback TCP scanner that accepts, reads everything, and never answers."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.received = bytearray()
        self.conns = []
        self.thread = serve_in_threads(self.listener, self.drain, self.conns)

    def drain(self, conn):
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                self.received += data
        except OSError:
            pass

    def close(self):
        self.listener.close()
        for conn in self.conns:
            conn.close()


def talk_to_silent_server(make, args, text):
    """One transaction of `text` with the plugin (make(args), as plugin_server makes
    it) pointed at a SilentServer: `args` may name its {port} and {address}.
    Returns (dialogue, seconds the transaction took, the closed server)."""
    server = SilentServer()
    try:
        srv = make(args.format(port=server.port, address=server.address))
        start = time.monotonic()
        d = srv.talk(*transaction(message(text)))
        elapsed = time.monotonic() - start
    finally:
        server.close()
    return d, elapsed, server


class KillableProxy:
    """tcpproxy.py in its own process in front of TARGET. die_at (a byte count or
    'eof'): the proxy SIGKILLs itself once it has forwarded that much of a request
    to the daemon and before any answer comes back (killed mid-scan, without a race
    against an outside killer); kill() ends it from outside."""

    def __init__(self, target, die_at=None):
        self.proc = subprocess.Popen([sys.executable, os.path.join(STUBS, "tcpproxy.py"), target,
                                      *([str(die_at)] if die_at is not None else [])],
                                     stdout=subprocess.PIPE, text=True)
        first = self.proc.stdout.readline().split()
        assert first[:1] == ["listening"], first
        self.port = int(first[1])
        self.address = f"127.0.0.1:{self.port}"
        self.killed_at = None
        self.die_at = die_at
        self.lock = threading.Lock()

    def kill(self):
        with self.lock:                  # the watcher thread and close() may both get here
            if self.proc.poll() is None:
                self.killed_at = time.monotonic()
                try:
                    os.kill(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.wait()

    def died(self):
        """True when the proxy killed itself (die_at), not close()."""
        return self.proc.poll() == -signal.SIGKILL and self.killed_at is None

    def close(self):
        if self.die_at is not None:      # it may be exiting this very moment: let it finish
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        self.proc.stdout.close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
