"""The DATA reader: a message body up to CRLF.CRLF, checked in bulk, in bounded memory.

Why its own module: this is where SMTP smuggling and lost mail happen. It must
end DATA only at CRLF.CRLF, refuse (or normalise) bare CR, bare LF and NUL, never
hold more than a bounded piece of any line or header in memory, and always read a
refused message to its real end so its bytes are never taken for commands.

It talks to the session through a small surface (app, channel, transaction, log,
run_hooks, answer), so it can be driven over a scripted channel.
"""

import re

from . import constants as C
from .header import Header

#: a line with no CRLF is handed on in pieces of about this size
PIECE = 65536
#: the header block is ended here at the latest; what follows is kept as body
HEADER_LIMIT = 1 << 20
#: and after this many fields (each costs a worker ~700 bytes once parsed: 1 MiB of
#: "X:a" lines would be 260,000 fields and 200 MB), the rest kept as body too
HEADER_FIELDS = 10000

_FIELD = re.compile(rb"^[!-9;-~]+[ \t]*:")


def _head(buffer, size):
    """The first `size` bytes of a bytearray as bytes, copied once."""
    with memoryview(buffer) as view:
        return bytes(view[:size])


class DataReader:
    """Reads one message after `354`; `read()` returns None or (code, text, enhanced).

    Policy, from the app: databytes (0 = unlimited); data_line_limit in octets
    including CRLF, never counting the transparency dot (RFC 5321 4.5.3.1.6),
    0 = any length (the default, as qpsmtpd and Postfix accept long lines);
    bare_newlines `reject` (bare CR, bare LF or NUL refuse the message) or
    `normalize` (CR/LF become LF line ends, NUL bytes are dropped).
    """

    def __init__(self, session):
        self.session = session
        self.txn = session.transaction
        app = session.app
        self.limit = app.databytes
        self.line_limit = app.data_line_limit
        self.normalize = app.bare_newlines in ("normalize", "normalise")
        self.size = 0
        self.too_big = False
        self.bare = False           # a bare CR or LF was seen
        self.nul = False            # a NUL byte was seen
        self.long_line = False
        self.partial_len = 0        # octets of the current unfinished line (no stuffing dot)
        self.header_done = False
        self.header_buf = bytearray()
        self.scan_pos = 0           # where scan_header stopped in header_buf
        self.seen_field = False
        self.field_count = 0
        self.store_error = None     # OSError of the spool (disk full): read on, then 452

    # -- reading ---------------------------------------------------------------------
    def read(self):
        channel = self.session.channel
        channel.begin(data=True)        # each read has the time-out; min_data_rate overall
        pending = channel.buffer
        channel.buffer = bytearray()
        at_line_start = True
        while True:
            if at_line_start and pending.startswith(b".\r\n"):
                channel.buffer = pending[3:]
                break
            end = pending.find(b"\r\n.\r\n")
            if end >= 0:
                self.process(_head(pending, end + 2), at_line_start)
                channel.buffer = pending[end + 5:]
                break
            last = pending.rfind(b"\r\n")
            if last >= 0:
                self.process(_head(pending, last + 2), at_line_start)
                del pending[:last + 2]
                at_line_start = True
            elif len(pending) > PIECE:
                # a long line: pass it on in pieces; keep the last byte, it may be a CR
                self.process(_head(pending, len(pending) - 1), at_line_start)
                del pending[:-1]
                at_line_start = False
            pending += channel.read_chunk()
        self.finish_header()
        if not self._refused():
            try:
                self.txn.flush()
            except OSError as exc:
                self.store_error = exc
                self.txn.drop_body()
        return self.verdict()

    def verdict(self):
        log = self.session.log
        if self.bare and not self.normalize:
            log(C.LOGNOTICE, "message refused: bare CR or LF line ending (SMTP smuggling defence)")
            return (554, "Message refused: bare CR or LF line ending; lines must end in CRLF "
                    "(RFC 5321 2.3.8)", "5.6.0")
        if self.nul and not self.normalize:
            log(C.LOGNOTICE, "message refused: NUL byte in message data")
            return (554, "Message refused: NUL byte in message data (RFC 5321 2.3.8)", "5.6.0")
        if self.long_line:
            log(C.LOGNOTICE, f"message refused: line longer than {self.line_limit} octets")
            return (554, f"Message refused: line longer than {self.line_limit} octets "
                    "(RFC 5321 4.5.3.1.6)", "5.6.0")
        if self.too_big:
            log(C.LOGNOTICE, f"message refused: over databytes ({self.limit})")
            return (552, "Message too big!", "5.3.4")
        if self.store_error is not None:
            log(C.LOGERROR, f"message not accepted: cannot spool it: {self.store_error}")
            return (452, "Insufficient system storage, try again later", "4.3.1")
        return None

    def _refused(self):
        return self.long_line or self.too_big or self.store_error is not None or (
            (self.bare or self.nul) and not self.normalize)

    # -- checking and storing ----------------------------------------------------------
    def process(self, content, at_line_start):
        """Handle a piece of the body: complete CRLF lines, or one unfinished line
        (content not ending in CRLF). `at_line_start`: content starts a line."""
        if not content:
            return
        # once refused nothing is stored, but every piece is still checked: the
        # reason given must not depend on where the client's reads happened to end
        lines = content.split(b"\r\n")
        lf = None                       # content with CRLF -> LF while no bare CR/LF seen
        if not self.bare:
            lf = b"\n".join(lines)     # one pass; faster than replace()
            if b"\r" in lf or lf.count(b"\n") != len(lines) - 1:
                self.bare = True
                lf = None
        if b"\0" in content:
            self.nul = True
        if self.line_limit and not self.long_line:
            self._check_lengths(content, lines, at_line_start)
        if self._refused():
            return                      # read on to the end, store nothing
        if lf is not None:              # every LF came from a CRLF: unstuff after LF
            data = lf[1:] if at_line_start and lf.startswith(b".") else lf
            data = data.replace(b"\n.", b"\n")
        else:
            data = content
            if at_line_start and data.startswith(b"."):
                data = data[1:]
            data = data.replace(b"\r\n.", b"\r\n").replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if self.nul:
            data = data.replace(b"\0", b"")
        self.size += len(data)
        if self.limit and self.size > self.limit:
            self.too_big = True
            return
        try:
            if self.header_done:
                self.txn.body_write(data)
            else:
                self.header_buf += data
                self.scan_header()
        except OSError as exc:          # ENOSPC, EDQUOT, EIO of the spool file
            self.store_error = exc
            self.txn.drop_body()

    def _check_lengths(self, content, lines, at_line_start):
        """Line lengths against data_line_limit; the stuffing dot does not count,
        an unfinished line carries its length into the next piece."""
        text_limit = self.line_limit - 2
        carried = 0 if at_line_start else self.partial_len
        unfinished = not content.endswith(b"\r\n")
        if carried or unfinished or len(content) > text_limit:
            for i, line in enumerate(lines):
                length = len(line) - (line[:1] == b"." and (i > 0 or at_line_start))
                if i == 0:
                    length += carried
                if length > text_limit:
                    self.long_line = True
                    return
        self.partial_len = 0
        if unfinished:
            last = lines[-1]
            self.partial_len = len(last) - (last[:1] == b"." and (len(lines) > 1 or at_line_start))
            if len(lines) == 1:
                self.partial_len += carried

    # -- the header block ----------------------------------------------------------------
    def scan_header(self):
        """Split the header block off as soon as it ends: at the blank line, at the
        first line that is neither a field nor a continuation (kept as body), or at
        HEADER_LIMIT octets or HEADER_FIELDS fields (the rest kept as body)."""
        buf = self.header_buf
        pos = self.scan_pos
        while True:
            nl = buf.find(b"\n", pos)
            if nl < 0:
                break
            line = buf[pos:nl]
            if not line:
                self._end_header(pos, nl + 1)
                return
            continuation = line[:1] in (b" ", b"\t") and self.seen_field
            if not continuation:
                if not _FIELD.match(line):
                    self._end_header(pos, pos)
                    return
                self.field_count += 1
                if self.field_count > HEADER_FIELDS:
                    self.session.log(C.LOGINFO, f"header block over {HEADER_FIELDS} fields: "
                                     "the rest is kept as body")
                    self._end_header(pos, pos)
                    return
            self.seen_field = True
            pos = nl + 1
        self.scan_pos = pos
        if len(buf) > HEADER_LIMIT:
            self.session.log(C.LOGINFO, f"header block over {HEADER_LIMIT} octets: "
                             "the rest is kept as body")
            self._end_header(pos, pos)

    def _end_header(self, header_end, body_start):
        text = bytes(self.header_buf[:header_end]).decode("utf-8", "surrogateescape")
        self.txn.header = Header.parse(text)
        body = bytes(self.header_buf[body_start:])
        self.header_buf = bytearray()
        self.header_done = True
        if body:
            self.txn.body_write(body)
        code, msgs, _ = self.session.run_hooks("data_headers_end")
        self.session.answer("data_headers_end", code, msgs)   # only disconnect codes answer

    def finish_header(self):
        if not self.header_done:
            buf = bytes(self.header_buf)
            self.header_buf = bytearray()
            self.txn.header = Header.parse(buf.decode("utf-8", "surrogateescape"))
            self.header_done = True
        if self.txn.header is None:
            self.txn.header = Header()
        self.txn.data_size = self.size
