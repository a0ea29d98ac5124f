"""A client for content scanners (clamd, spamd, rspamd, dspam ...) that content
plugins share, so each one does not write its own socket code with its own holes.

    clamd = Scanner("/run/clamav/clamd.ctl", timeout=30, max_bytes=25 << 20)

    def instream(conn):
        conn.send(b"zINSTREAM\\0")
        conn.send_message(transaction, frame=lambda chunk: struct.pack(">I", len(chunk)) + chunk)
        conn.send(b"\\0\\0\\0\\0")
        return conn.read_until(b"\\0")

    try:
        reply = clamd.exchange(instream)
    except ScannerError as exc:
        return clamd.failed(self, exc)    # logged; (DENYSOFT, ...) or DECLINED (policy)

Why one place:
  * one deadline for the whole exchange (connect, send, every read): a scanner
    that trickles a byte now and then cannot hold the worker past `timeout`;
  * at most `max_bytes` of the message are sent (the rest is left out and
    `conn.truncated` says so), so a huge message cannot tie up the scanner;
  * one failure policy: `tempfail` (default: 4xx, the sender retries, no mail
    passes unscanned) or `accept` (deliver unscanned), and the error is logged.
Addresses: `/path/to/socket` or `unix:/path` (unix socket), `host:port`,
`[v6addr]:port`.
"""

import socket
import time

from .. import metrics
from ..constants import DECLINED, DENYSOFT, LOGERROR, LOGWARN

FAILURE_POLICIES = ("tempfail", "accept")
READ_LIMIT = 1 << 20             # the most a read_until / read_all keeps in memory


class ScannerError(Exception):
    """The exchange with the scanner failed (unreachable, time-out, protocol);
    the text names the scanner and the reason."""


def parse_address(text):
    """'/run/x.sock', 'unix:/run/x.sock' -> (AF_UNIX, path); 'host:port',
    '[::1]:port' -> (AF_INET or AF_INET6, (host, port)). ValueError otherwise."""
    text = str(text).strip()
    if text.startswith("unix:"):
        text = text[5:]
    if text.startswith("/"):
        return socket.AF_UNIX, text
    if text.startswith("["):
        host, _, port = text[1:].partition("]")
        port = port.lstrip(":")
        family = socket.AF_INET6
    else:
        host, _, port = text.rpartition(":")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"scanner address '{text}' is not /path, unix:/path, host:port or [v6]:port")
    return family, (host, int(port))


class Scanner:
    """Where a scanner listens and how to treat it; holds no socket between
    exchanges, so one object can be made in register() and used in every worker."""

    def __init__(self, address, timeout=30.0, max_bytes=None, failure="tempfail", name="scanner"):
        self.family, self.address = parse_address(address)
        self.timeout = float(timeout)
        if self.timeout <= 0:
            raise ValueError(f"{name}: timeout must be more than 0 seconds")
        self.max_bytes = int(max_bytes) if max_bytes else None
        self.failure = str(failure).lower()
        if self.failure not in FAILURE_POLICIES:
            raise ValueError(f"{name}: failure policy must be one of {', '.join(FAILURE_POLICIES)}, "
                             f"not '{failure}'")
        self.name = name

    def __str__(self):
        where = self.address if self.family == socket.AF_UNIX else "%s:%d" % self.address
        return f"{self.name} at {where}"

    def exchange(self, talk):
        """Connect, run talk(conn) and close; everything within `timeout` seconds.
        Returns what talk returns; ScannerError on any failure."""
        deadline = time.monotonic() + self.timeout
        try:
            sock = socket.socket(self.family, socket.SOCK_STREAM)
        except OSError as exc:
            raise ScannerError(f"{self}: {exc}") from exc
        conn = ScannerConnection(self, sock, deadline)
        try:
            conn.connect()
            return talk(conn)
        except socket.timeout as exc:
            raise ScannerError(f"{self}: no answer within {self.timeout:g}s") from exc
        except OSError as exc:
            raise ScannerError(f"{self}: {exc.strerror or exc}") from exc
        finally:
            sock.close()
            metrics.observe("qpsmtpd_scanner_seconds", time.monotonic() - deadline + self.timeout,
                            {"scanner": self.name})

    def failed(self, plugin, exc, message="Unable to scan the message, try again later"):
        """Log the failure and return what the hook should: (DENYSOFT, message)
        under `tempfail`, DECLINED (go on, unscanned) under `accept`."""
        if self.failure == "accept":
            plugin.log(LOGWARN, f"error, {exc}; accepting the message unscanned (failure accept)")
            return DECLINED
        plugin.log(LOGERROR, f"error, {exc}")
        return DENYSOFT, message

    def message_size(self, transaction, crlf=False):
        """The bytes send_message will send: for protocols that announce a length
        first (spamd's Content-length)."""
        size = transaction.message_size(crlf=crlf)
        return min(size, self.max_bytes) if self.max_bytes else size


class ScannerConnection:
    """One connection to the scanner; every call spends the exchange's deadline."""

    def __init__(self, scanner, sock, deadline):
        self.scanner = scanner
        self.sock = sock
        self.deadline = deadline
        self.sent = 0                # message bytes sent by send_message
        self.truncated = False

    def _arm(self):
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("deadline passed")
        self.sock.settimeout(remaining)

    def connect(self):
        self._arm()
        self.sock.connect(self.scanner.address)

    def send(self, data):
        """Send all of `data` (bytes) before the deadline."""
        self._arm()
        self.sock.sendall(data)

    def send_message(self, transaction, frame=None, crlf=False, chunk_size=65536):
        """Stream the message (header, blank line, body; LF line ends unless crlf)
        in chunks of at most chunk_size, each passed through frame(chunk) if given
        (clamd's length prefix). Stops at max_bytes (then truncated is True).
        Returns the message bytes sent."""
        limit = self.scanner.max_bytes
        for chunk in transaction.iter_message(chunk_size=chunk_size, crlf=crlf):
            for start in range(0, len(chunk), chunk_size):
                piece = chunk[start:start + chunk_size]
                if limit is not None and self.sent + len(piece) > limit:
                    piece = piece[:limit - self.sent]
                    self.truncated = True
                if piece:
                    self.send(frame(piece) if frame else piece)
                    self.sent += len(piece)
                if self.truncated:
                    return self.sent
        return self.sent

    def shutdown_write(self):
        """Tell the scanner the request is complete (half-close)."""
        self.sock.shutdown(socket.SHUT_WR)

    def recv(self, size=65536):
        """Up to `size` bytes; b'' when the scanner closed the connection."""
        self._arm()
        return self.sock.recv(size)

    def read_until(self, delimiter, limit=READ_LIMIT):
        """Bytes up to and including `delimiter`; ScannerError if the scanner closes
        first or sends more than `limit` bytes without it."""
        data = bytearray()
        while True:
            index = data.find(delimiter)
            if index >= 0:
                extra = len(data) - index - len(delimiter)
                if extra:
                    self._pushback = bytes(data[-extra:])
                return bytes(data[:index + len(delimiter)])
            if len(data) > limit:
                raise ScannerError(f"{self.scanner}: answer longer than {limit} bytes")
            chunk = self._take_pushback() or self.recv()
            if not chunk:
                raise ScannerError(f"{self.scanner}: connection closed before the answer ended"
                                   f" ({bytes(data[:80])!r})")
            data += chunk

    def readline(self, limit=READ_LIMIT):
        return self.read_until(b"\n", limit)

    def read_all(self, limit=READ_LIMIT):
        """Everything until the scanner closes the connection."""
        data = bytearray(self._take_pushback())
        while True:
            chunk = self.recv()
            if not chunk:
                return bytes(data)
            data += chunk
            if len(data) > limit:
                raise ScannerError(f"{self.scanner}: answer longer than {limit} bytes")

    _pushback = b""

    def _take_pushback(self):
        data, self._pushback = self._pushback, b""
        return data
