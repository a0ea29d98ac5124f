"""SMTP sessions run inside the test process over a scripted channel: no socket,
no subprocess, no sleeping. Milliseconds per dialogue, so a property test can run
hundreds of them.

    server = InProcessServer(config)                   # a harness.ConfigDir
    d = server.talk("EHLO client.test", "MAIL FROM:<a@b.test>",
                    "RCPT TO:<u@example.test>", "DATA", b"Subject: x\\r\\n\\r\\nhi\\r\\n.\\r\\n", "QUIT")
    d.codes        -> [220, 250, 250, 250, 354, 250, 221]
    d.messages     -> what the t_capture queue plugin kept (sender, recipients, header, body)

Script items: a str is one command line (CRLF added); bytes are sent exactly as
they are, each item one read of the server (so a message can be cut anywhere);
Pause(seconds) is the client keeping quiet; a callable is called when the server
reads past it (to look at the server mid-session). The clock is a FakeClock: a pause
advances it, and a pause as long as the server's time-out makes the read time out
(ClientTimeout) after advancing the clock by the time-out, as a real socket would.
When the script runs out the client closes the connection.

The session is the engine's public entry point (server.common.run_session) on the
engine's own Channel class; only the transport (_recv/_send) is scripted.
"""

import io
import os
import re
from collections import deque
from dataclasses import dataclass, field

from qpsmtpd_py.app import Qpsmtpd
from qpsmtpd_py.channel import Channel, ClientTimeout
from qpsmtpd_py.config import Config
from qpsmtpd_py.server.common import new_connection, run_session

from fakeclock import FakeClock

CLIENT_IP = "192.0.2.10"


class Pause:
    """The client sends nothing for `seconds` (float('inf'): never again)."""

    def __init__(self, seconds):
        self.seconds = float(seconds)

    def __repr__(self):
        return f"Pause({self.seconds})"


SILENCE = float("inf")


class ScriptedChannel(Channel):
    """The engine's Channel with the socket replaced by a script and a recorder."""

    def __init__(self, script, clock, timeout=1200):
        super().__init__(timeout)
        self.clock = clock
        self.script = deque(_item(x) for x in script)
        self.sends = []             # (clock time, bytes) of every write to the client
        self.reads = 0              # how many script chunks the server has read
        self.closed = False

    def _recv(self, timeout):
        while self.script:
            item = self.script[0]
            if callable(item):
                self.script.popleft()
                item()
                continue
            if not isinstance(item, Pause):
                self.script.popleft()
                self.reads += 1
                return item
            if timeout is not None and item.seconds >= timeout:
                self.clock.advance(timeout)
                item.seconds -= timeout
                raise ClientTimeout()
            self.clock.advance(item.seconds)
            self.script.popleft()
        return b""                  # the client closed the connection

    def _send(self, data):
        self.sends.append((self.clock.time(), bytes(data)))

    def close(self):
        super().close()
        self.closed = True

    @property
    def unread(self):
        """Bytes the client sent that the server never read (it hung up first)."""
        rest = b"".join(x for x in self.script if isinstance(x, bytes))
        return bytes(self.buffer) + rest


def _item(x):
    if isinstance(x, str):
        return (x + "\r\n").encode("utf-8", "surrogateescape")
    if isinstance(x, Pause):
        return Pause(x.seconds)     # a copy: the channel uses pauses up
    if isinstance(x, (bytes, bytearray)):
        return bytes(x)
    if callable(x):
        return x
    raise TypeError(f"script items are str, bytes, Pause or callables, not {type(x).__name__}")


@dataclass
class Reply:
    code: int
    lines: list                     # text after "250-" / "250 "
    at: float                       # clock time when the server sent it
    raw: bytes

    @property
    def text(self):
        return "\n".join(self.lines)

    def __iter__(self):             # code, text = reply
        return iter((self.code, self.text))


_REPLY_LINE = re.compile(rb"(\d{3})([ -])(.*)\r\n", re.S)


def parse_replies(sends):
    """[(time, bytes)] written by the server -> [Reply]; raises on a malformed line."""
    replies, pending, raw = [], [], b""
    for at, data in sends:
        for line in data.splitlines(keepends=True):
            match = _REPLY_LINE.fullmatch(line)
            assert match, f"malformed reply line {line!r}"
            pending.append(match.group(3).decode("utf-8", "surrogateescape"))
            raw += line
            if match.group(2) == b" ":
                replies.append(Reply(int(match.group(1)), pending, at, raw))
                pending, raw = [], b""
    assert not pending, f"unfinished multi-line reply {raw!r}"
    return replies


@dataclass
class Dialogue:
    """What one in-process session did."""

    replies: list
    connection: object
    channel: ScriptedChannel
    log: str = ""
    messages: list = field(default_factory=list)

    @property
    def codes(self):
        return [r.code for r in self.replies]

    @property
    def pairs(self):
        """[(code, text)] of every reply, the greeting first."""
        return [(r.code, r.text) for r in self.replies]

    @property
    def wire(self):
        """Everything the server wrote, as bytes."""
        return b"".join(data for _, data in self.channel.sends)

    @property
    def unread(self):
        return self.channel.unread


class InProcessServer:
    """A loaded server (config dir -> app with its plugins) that runs sessions in
    this process. Plugins are loaded once; each talk() is a new connection."""

    def __init__(self, config, clock=None, rdns=False):
        self.config = config
        self.clock = clock or FakeClock()
        self.stderr = io.StringIO()
        self.app = Qpsmtpd(Config([config.dir]), stderr=self.stderr)
        self.app.clock = self.clock
        self.app.load()
        self.app.rdns = rdns        # no PTR lookups: the fast lane has no DNS server

    def talk(self, *script, remote_ip=CLIENT_IP, remote_host=None, relay_client=False,
             local=("127.0.0.1", 25)):
        """Run one session with this client script; returns a Dialogue."""
        connection = new_connection((remote_ip, 0), local, remote_host=remote_host)
        connection.relay_client = relay_client
        channel = ScriptedChannel(script, self.clock)
        start = self.stderr.tell()
        run_session(self.app, channel, connection)
        log = self.stderr.getvalue()[start:]
        return Dialogue(parse_replies(channel.sends), connection, channel, log,
                        list(connection.notes.get("t_capture", [])))


def message_wire(body):
    """A message text (str, \\n line ends) -> DATA bytes, dot-stuffed, ending CRLF.CRLF."""
    lines = body.split("\n")
    return "".join(("." + l if l.startswith(".") else l) + "\r\n" for l in lines).encode() + b".\r\n"


def spool_files(spool_dir):
    """[(path, size)] of the files under spool_dir this process has open (spool
    files are unlinked at once, so only /proc/self/fd shows them)."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(spool_dir.rstrip("/") + "/"):
                out.append((target, os.fstat(int(fd)).st_size))
        except OSError:
            continue
    return out
