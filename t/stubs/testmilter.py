"""A milter for the tests (the filter side of the protocol, versions 2 and 6), for
the answers opendkim never gives: every end-of-message change, reject, tempfail,
reply codes, discard, quarantine, accept, skip; symbol lists and NO/NR flags.

    milter = TestMilter(version=6, replies={"rcpt": [REPLY("550 5.1.1 no such user")]})
    ... plugin line: f"milter test 127.0.0.1:{milter.port}" ...
    milter.seen        # [(stage, value)] of everything it was sent, macros as ("macro", cmd, {...})
    milter.close()

`replies` maps a stage (connect, helo, mail, rcpt, data, header, eoh, body, eom) to
the packets it answers with (the last being the final answer; `continue` when the
stage is not listed). A stage whose list is a function gets called with the
stage's value and returns the packets.
"""

import socket
import struct
import time

from .acceptor import serve_in_threads

STAGES = {b"C": "connect", b"H": "helo", b"M": "mail", b"R": "rcpt", b"T": "data",
          b"L": "header", b"N": "eoh", b"B": "body", b"E": "eom", b"U": "unknown"}


def packet(cmd, data=b""):
    return struct.pack(">I", len(data) + 1) + cmd + data


def z(*parts):
    return b"".join(p.encode() + b"\0" for p in parts)


CONTINUE = (b"c", b"")
ACCEPT = (b"a", b"")
REJECT = (b"r", b"")
TEMPFAIL = (b"t", b"")
DISCARD = (b"d", b"")
SKIP = (b"s", b"")
PROGRESS = (b"p", b"")


def REPLY(text):
    return (b"y", z(text))


def ADD_HEADER(name, value):
    return (b"h", z(name, value))


def INSERT_HEADER(index, name, value):
    return (b"i", struct.pack(">I", index) + z(name, value))


def CHANGE_HEADER(index, name, value):
    return (b"m", struct.pack(">I", index) + z(name, value))


def ADD_RCPT(address):
    return (b"+", z(address))


def DELETE_RCPT(address):
    return (b"-", z(address))


def CHANGE_FROM(address):
    return (b"e", z(address))


def REPLACE_BODY(data):
    return (b"b", data)


def QUARANTINE(reason):
    return (b"q", z(reason))


class TestMilter:
    __test__ = False                 # not a pytest test class
    def __init__(self, version=6, actions=0x1FF, protocol=0, symlists=None, replies=None,
                 hang=()):
        self.version, self.actions, self.protocol = version, actions, protocol
        self.symlists = symlists or {}          # {stage number: "macro names"}
        self.replies = replies or {}
        self.hang = set(hang)                   # stages it never answers
        self.seen = []
        self.offered = None                     # (version, actions, protocol) the MTA offered
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.socks = []
        serve_in_threads(self.listener, self.talk, self.socks)

    @property
    def connections(self):
        """How many connections the MTA made."""
        return len(self.socks)

    def read(self, conn, size):
        data = b""
        while len(data) < size:
            chunk = conn.recv(size - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def talk(self, conn):
        try:
            while True:
                length = struct.unpack(">I", self.read(conn, 4))[0]
                body = self.read(conn, length)
                cmd, data = body[:1], body[1:]
                if not self.handle(conn, cmd, data):
                    return
        except (EOFError, OSError):
            pass
        finally:
            conn.close()

    def handle(self, conn, cmd, data):
        if cmd == b"O":
            self.offered = struct.unpack(">III", data[:12])
            extra = b"".join(struct.pack(">I", stage) + names.encode() + b"\0"
                             for stage, names in self.symlists.items())
            conn.sendall(packet(b"O", struct.pack(">III", self.version, self.actions,
                                                  self.protocol) + extra))
            return True
        if cmd == b"D":
            parts = data[1:].split(b"\0")[:-1]
            macros = {parts[i].decode(): parts[i + 1].decode() for i in range(0, len(parts) - 1, 2)}
            self.seen.append(("macro", data[:1].decode(), macros))
            return True
        if cmd == b"Q":
            self.seen.append(("quit", None))
            return False
        if cmd == b"A":
            self.seen.append(("abort", None))
            return True
        stage = STAGES.get(cmd, cmd.decode())
        if stage == "body":
            value = data
        elif stage == "connect":
            host, _, rest = data.partition(b"\0")
            value = (host.decode(), rest[:1].decode(), *([struct.unpack(">H", rest[1:3])[0],
                                                         rest[3:-1].decode()] if len(rest) > 1 else []))
        else:
            value = tuple(p.decode() for p in data.split(b"\0")[:-1])
        self.seen.append((stage, value))
        if stage in self.hang:
            return True
        if self.no_reply(cmd):
            return True
        replies = self.replies.get(stage, [CONTINUE])
        if callable(replies):
            replies = replies(value)
        for reply_cmd, reply_data in replies:
            conn.sendall(packet(reply_cmd, reply_data))
        return True

    def no_reply(self, cmd):
        flags = {b"C": 0x1000, b"H": 0x2000, b"M": 0x4000, b"R": 0x8000, b"T": 0x10000,
                 b"L": 0x80, b"N": 0x40000, b"B": 0x80000}
        return bool(self.protocol & flags.get(cmd, 0))

    def stages(self):
        return [s for s, *_ in self.seen if s != "macro"]

    def quit_seen(self, within=5.0):
        """Stages once the MTA's quit has arrived: the MTA sends it as the session ends,
        but this stub's thread may record it a moment after the client saw the close."""
        deadline = time.monotonic() + within
        while "quit" not in self.stages() and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.stages()

    def macros(self, cmd):
        merged = {}
        for entry in self.seen:
            if entry[0] == "macro" and entry[1] == cmd:
                merged.update(entry[2])
        return merged

    def close(self):
        self.listener.close()
        for sock in self.socks:
            try:
                sock.close()
            except OSError:
                pass
