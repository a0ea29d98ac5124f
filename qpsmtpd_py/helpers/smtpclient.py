"""A small SMTP client for plugins that talk to another mail server
(queue/smtp-forward; usable by auth or verification plugins too).

Unlike smtplib it streams the message from the transaction's spool file, so a
large message never sits in memory, and it reports every reply as a Reply
(code plus text lines) so callers can pass the other server's words on.

Two limits: `timeout` for each step (connecting, each read, each write) and
`deadline`, seconds for the whole conversation from the connect on. A server that
drips a byte every few seconds passes every per-step time-out; the deadline is
what ends it (SMTPError with no reply: a temporary failure, 451 to our client).

    with SMTPClient.connect("127.0.0.1", 25, timeout=60, deadline=300) as smtp:
        smtp.expect(smtp.greeting, 2)
        smtp.hello("mx.example.com")
        smtp.expect(smtp.command("MAIL FROM:<a@b.example>"), 2)
"""

import re
import socket
import time

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
    def __init__(self, sock, host, timeout=None, deadline=None):
        self.sock = sock
        self.host = host
        self.timeout = timeout if timeout is not None else sock.gettimeout()
        self.deadline = deadline            # time.monotonic() value, or None
        self.allowed = None                 # the deadline in seconds, for messages
        self.buffer = bytearray()
        self.esmtp = {}             # EHLO keyword (upper case) -> parameter text
        self.greeting = None

    @classmethod
    def connect(cls, host, port=25, timeout=60, source=None, deadline=None):
        """Connect and read the greeting (kept in .greeting); OSError on failure.
        A host starting with "/" is a unix socket (LMTP servers often listen on one).
        `deadline`: seconds the whole conversation may take (None: no limit)."""
        ends = time.monotonic() + deadline if deadline else None
        first = min(timeout, deadline) if deadline else timeout
        sock = stream_socket(host, port, first, source)
        client = cls(sock, host, timeout, ends)
        client.allowed = deadline
        try:
            client.greeting = client.read_reply()
        except Exception:
            client.close()
            raise
        return client

    # -- the clock -------------------------------------------------------------------
    def _spend(self):
        """Set the socket's time-out for the next call: the step time-out, cut to
        what is left of the deadline; SMTPError once the deadline has passed."""
        if self.deadline is None:
            return
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise SMTPError(f"{self.host} too slow: the conversation took over "
                            f"{self.allowed:g}s (deadline)")
        self.sock.settimeout(min(self.timeout, left) if self.timeout else left)

    def _send(self, data):
        self._spend()
        try:
            self.sock.sendall(data)
        except socket.timeout:
            self._spend()                   # the deadline, if that is what ran out
            raise

    def _readline(self):
        """One reply line (at most MAX_LINE octets), b"" at EOF; every recv spends
        the deadline, so a server dripping bytes cannot stretch it."""
        while True:
            end = self.buffer.find(b"\n")
            if end >= 0 or len(self.buffer) >= MAX_LINE:
                cut = end + 1 if end >= 0 else MAX_LINE
                line = bytes(self.buffer[:cut])
                del self.buffer[:cut]
                return line
            self._spend()
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                self._spend()
                raise
            if not data:
                line = bytes(self.buffer)
                self.buffer.clear()
                return line
            self.buffer += data

    # -- protocol ------------------------------------------------------------------
    def read_reply(self):
        lines, code = [], None
        while True:
            raw = self._readline()
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
        self._send(line.encode("utf-8", "surrogateescape") + b"\r\n")
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

    def start(self, me, verb="EHLO", then=None):
        """Check the greeting and say hello (then `then(self)`, e.g. XCLIENT). A
        failure here is not about the message: it is raised as "session set-up
        failed" without the reply, so it is always temporary."""
        try:
            self.expect(self.greeting, 2, "greeting")
            self.hello(me, verb=verb)
            if then is not None:
                then(self)
        except SMTPError as exc:
            raise SMTPError(f"session set-up failed: {exc}") from None

    def mail_from(self, transaction):
        """MAIL FROM the transaction's sender, passing on the client's BODY=8BITMIME
        and SMTPUTF8 where this server offers them; SMTPError unless 2xx."""
        client = transaction.notes.get("mail_params") or {}
        params = ""
        if (client.get("body") or "").upper() == "8BITMIME" and "8BITMIME" in self.esmtp:
            params += " BODY=8BITMIME"
        if "smtputf8" in client and "SMTPUTF8" in self.esmtp:
            params += " SMTPUTF8"
        return self.expect(self.command(f"MAIL FROM:{transaction.sender.format()}" + params),
                           2, "MAIL")

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
                self._send(_to_wire(data))
        if pending:
            self._send(_to_wire(pending + b"\n"))
        self._send(b".\r\n")
        return self.read_reply()

    def quit(self):
        try:
            self.command("QUIT")
        except (OSError, SMTPError):
            pass

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def stream_socket(host, port, timeout, source=None):
    """A connected socket: a unix socket when `host` starts with "/" (`port` is
    then unused), else TCP to host:port from `source` (an address, or None)."""
    if host.startswith("/"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(host)
        except OSError:
            sock.close()
            raise
        return sock
    return socket.create_connection((host, port), timeout=timeout, source_address=source)


def _to_wire(data):
    """Whole lines -> CRLF line ends, leading dots doubled."""
    data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    data = data.replace(b"\r\n.", b"\r\n..")
    return b"." + data if data.startswith(b".") else data


def xtext(value):
    """RFC 3461 xtext: '+', '=' and characters outside '!'..'~' as +HH."""
    return "".join(ch if "!" <= ch <= "~" and ch not in "+=" else
                   "".join(f"+{b:02X}" for b in ch.encode("utf-8")) for ch in str(value))
