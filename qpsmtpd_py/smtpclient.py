"""A small SMTP client for plugins that talk to another mail server
(queue/smtp-forward; usable by auth or verification plugins too).

Unlike smtplib it streams the message from the transaction's spool file, so a
large message never sits in memory, and it reports every reply as a Reply
(code plus text lines) so callers can pass the other server's words on.

    with SMTPClient.connect("127.0.0.1", 25, timeout=60) as smtp:
        smtp.expect(smtp.greeting, 2)
        smtp.hello("mx.example.com")
        smtp.expect(smtp.command("MAIL FROM:<a@b.example>"), 2)
"""

import re
import socket

_REPLY_LINE = re.compile(rb"^(\d{3})([ -])(.*?)\r?\n$", re.S)
MAX_REPLY_LINES = 100
MAX_LINE = 4096


class Reply:
    """One (multi-line) reply: `code` (int) and `lines` (text without codes)."""

    def __init__(self, code, lines):
        self.code = code
        self.lines = lines

    @property
    def text(self):
        return " ".join(line.strip() for line in self.lines if line.strip())

    @property
    def kind(self):
        return self.code // 100

    def __str__(self):
        return f"{self.code} {self.text}".strip()


class SMTPError(Exception):
    """The other server refused something (reply is set), or the connection failed
    (reply is None: always a temporary problem)."""

    def __init__(self, message, reply=None):
        super().__init__(message)
        self.reply = reply

    @property
    def permanent(self):
        return self.reply is not None and self.reply.kind == 5


class SMTPClient:
    def __init__(self, sock, host):
        self.sock = sock
        self.host = host
        self.file = sock.makefile("rb")
        self.esmtp = {}             # EHLO keyword (upper case) -> parameter text
        self.greeting = None

    @classmethod
    def connect(cls, host, port=25, timeout=60, source=None):
        """Connect and read the greeting (kept in .greeting); OSError on failure.
        A host starting with "/" is a unix socket (LMTP servers often listen on one)."""
        if host.startswith("/"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(host)
            except OSError:
                sock.close()
                raise
        else:
            sock = socket.create_connection((host, port), timeout=timeout, source_address=source)
        client = cls(sock, host)
        try:
            client.greeting = client.read_reply()
        except Exception:
            client.close()
            raise
        return client

    # -- protocol ------------------------------------------------------------------
    def read_reply(self):
        lines, code = [], None
        while True:
            raw = self.file.readline(MAX_LINE)
            if not raw:
                raise SMTPError(f"{self.host} closed the connection")
            match = _REPLY_LINE.match(raw)
            if not match or (code is not None and int(match.group(1)) != code):
                raise SMTPError(f"{self.host} sent a malformed reply: {raw[:100]!r}")
            code = int(match.group(1))
            lines.append(match.group(3).decode("utf-8", "replace"))
            if match.group(2) == b" ":
                return Reply(code, lines)
            if len(lines) >= MAX_REPLY_LINES:
                raise SMTPError(f"{self.host} sent a reply of more than {MAX_REPLY_LINES} lines")

    def command(self, line):
        """Send one command line; returns its Reply."""
        if "\r" in line or "\n" in line:
            raise ValueError("SMTP command with a line break")
        self.sock.sendall(line.encode("utf-8", "surrogateescape") + b"\r\n")
        return self.read_reply()

    @staticmethod
    def expect(reply, kind, what="command"):
        """Raise SMTPError unless reply is of class `kind` (2 or 3)."""
        if reply.kind != kind:
            raise SMTPError(f"{what} refused: {reply}", reply)
        return reply

    def hello(self, name, verb="EHLO"):
        """EHLO (falling back to HELO), or LHLO for LMTP (no fall-back); fills .esmtp
        with the offered extensions."""
        reply = self.command(f"{verb} {name}")
        self.esmtp = {}
        if reply.kind == 2:
            for line in reply.lines[1:]:
                keyword, _, param = line.strip().partition(" ")
                self.esmtp[keyword.upper()] = param
            return reply
        if verb != "EHLO":
            return self.expect(reply, 2, verb)
        return self.expect(self.command(f"HELO {name}"), 2, "HELO")

    def send_data(self, chunks):
        """DATA, then the message (LF or CRLF line ends) dot-stuffed, then '.'.
        Returns the final Reply (any code; the caller decides)."""
        self.expect(self.command("DATA"), 3, "DATA")
        pending = b""
        for chunk in chunks:
            data = pending + chunk
            cut = data.rfind(b"\n") + 1        # whole lines now, the rest with the next chunk
            data, pending = data[:cut], data[cut:]
            if data:
                self.sock.sendall(_to_wire(data))
        if pending:
            self.sock.sendall(_to_wire(pending + b"\n"))
        self.sock.sendall(b".\r\n")
        return self.read_reply()

    def quit(self):
        try:
            self.command("QUIT")
        except (OSError, SMTPError):
            pass

    def close(self):
        for handle in (self.file, self.sock):
            try:
                handle.close()
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _to_wire(data):
    """Whole lines -> CRLF line ends, leading dots doubled."""
    data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    data = data.replace(b"\r\n.", b"\r\n..")
    return b"." + data if data.startswith(b".") else data


def xtext(value):
    """RFC 3461 xtext: '+', '=' and characters outside '!'..'~' as +HH."""
    return "".join(ch if "!" <= ch <= "~" and ch not in "+=" else
                   "".join(f"+{b:02X}" for b in ch.encode("utf-8")) for ch in str(value))
