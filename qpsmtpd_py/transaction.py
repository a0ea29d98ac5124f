"""One mail transaction: envelope, parsed header, body spool and notes.

The body (without the header block) is kept in memory up to `size_threshold`
bytes, then moves to an unlinked temp file in `spool_dir`, so a 50 MB message
costs no more memory than a small one. Line ends are LF, as in qpsmtpd.

Plugins change the message with body_append / body_replace and the Header
methods (add, replace, delete); `data_size` is worked out from what is there, so
it stays right for later plugins and the queue whatever they changed.
"""

import io
import os
import shutil
import tempfile
import time

from .header import Header

#: scratch files in the spool dir untouched this long were left by a killed
#: process; they are removed when the server starts (qmail's 36 hours)
STALE_AGE = 36 * 3600


# One emptied spool file per process, reused by the next big message: creating and
# dropping an unlinked file costs far more than truncating one (ext4: ~0.15 ms).
_spare = []                         # [(pid, spool_dir, file)]
_CLOSED = io.BytesIO()
_CLOSED.close()


def _spool_file(spool_dir):
    while _spare:
        pid, directory, fh = _spare.pop()
        if pid == os.getpid() and directory == spool_dir:
            return fh
        # inherited across fork: the parent shares this file; never write to it
    return tempfile.TemporaryFile(prefix="qpsmtpd-body-", dir=spool_dir)


def remove_stale(spool_dir, now=None):
    """Remove our scratch files (qpsmtpd-*) older than STALE_AGE from the spool
    dir; returns how many. Called at start-up: a worker killed mid-message leaves
    its temp_file()s behind (spooled bodies are unlinked files and leave nothing)."""
    cutoff = (now or time.time()) - STALE_AGE
    removed = 0
    try:
        entries = list(os.scandir(spool_dir))
    except OSError:
        return 0
    for entry in entries:
        try:
            if not entry.name.startswith("qpsmtpd-") or entry.stat(follow_symlinks=False).st_mtime >= cutoff:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed += 1
        except OSError:
            pass
    return removed


def _recycle(fh, spool_dir):
    """Empty a spool file and keep it for the next message; False if it cannot be."""
    if _spare or fh.closed:
        return False
    try:
        fh.seek(0)
        fh.truncate()
    except (OSError, ValueError):
        return False
    _spare.append((os.getpid(), spool_dir, fh))
    return True


class Transaction:
    def __init__(self, spool_dir=None, size_threshold=10000):
        self.sender = None
        self.recipients = []
        self.header = None
        self.notes = {}
        self._data_size = 0         # until the header exists (see data_size)
        self.spool_dir = spool_dir
        self.size_threshold = size_threshold
        self._body = io.BytesIO()
        self._spooled = False
        self._temp_paths = []

    # -- envelope -----------------------------------------------------------------
    def add_recipient(self, address):
        self.recipients.append(address)

    def remove_recipient(self, address):
        self.recipients = [r for r in self.recipients if r is not address and r != address]

    def note(self, key, *value):
        if value:
            self.notes[key] = value[0]
        return self.notes.get(key)

    # -- size -----------------------------------------------------------------------
    @property
    def data_size(self):
        """Bytes of the message as it stands (header, blank line, body; LF line
        ends): what the queue writes, after every change plugins made."""
        if self.header is None:
            return self._data_size
        return len(self.header.as_bytes()) + 1 + self.body_length

    @data_size.setter
    def data_size(self, value):
        # kept for code that sets it while reading DATA; once the header exists
        # the size is worked out from the message itself
        self._data_size = value

    def message_size(self, crlf=False):
        """data_size, or the size with CRLF line ends (what goes on the wire)."""
        if not crlf:
            return self.data_size
        return sum(len(chunk) for chunk in self.iter_message(crlf=True))

    # -- body -----------------------------------------------------------------------
    def body_append(self, data):
        """Add text or bytes at the end of the body (LF line ends)."""
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        self._body.seek(0, os.SEEK_END)
        self.body_write(data)

    def body_replace(self, data):
        """Replace the whole body with bytes, text, or the contents of a binary
        file object (read in chunks, so a large new body is never all in memory)."""
        if self._spooled:
            self._body.seek(0)
            self._body.truncate()
        else:
            self._body = io.BytesIO()
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        if isinstance(data, (bytes, bytearray, memoryview)):
            self.body_write(bytes(data))
            return
        while True:
            chunk = data.read(65536)
            if not chunk:
                break
            self.body_write(chunk)

    def body_write(self, data):
        """Append body bytes at the current position (the reader's; plugins use
        body_append); moves the body to disk once it passes the threshold."""
        self._body.write(data)
        if not self._spooled and self._body.tell() > self.size_threshold:
            self._spool_to_disk()

    def _spool_to_disk(self):
        fh = _spool_file(self.spool_dir)
        try:
            fh.write(self._body.getvalue())
            fh.flush()              # ENOSPC shows here, not later in a reader's seek
        except OSError:
            if not _recycle(fh, self.spool_dir):
                fh.close()
            raise
        self._body = fh
        self._spooled = True

    def flush(self):
        """Push buffered body bytes into the spool file, so that a full disk is
        found while the message is read (and answered 452), not later."""
        self._body.flush()

    def drop_body(self):
        """Forget the body of a message refused because the spool is full: bytes
        still in the file's buffer cannot be written, and any later seek (the
        size in the log line, a reset) would try again and fail."""
        body, self._body, self._spooled = self._body, io.BytesIO(), False
        try:
            body.close()                # the flush fails; the file is closed anyway
        except (OSError, ValueError):
            pass

    @property
    def body_length(self):
        pos = self._body.tell()
        self._body.seek(0, os.SEEK_END)
        size = self._body.tell()
        self._body.seek(pos)
        return size

    def body_fh(self):
        """The body as a binary file object, rewound. Do not close it."""
        self._body.flush()
        self._body.seek(0)
        return self._body

    def body_bytes(self, limit=None):
        fh = self.body_fh()
        data = fh.read() if limit is None else fh.read(limit)
        self._body.seek(0, os.SEEK_END)
        return data

    def iter_message(self, chunk_size=65536, crlf=False):
        """Header then body as byte chunks (LF line ends, or CRLF for the wire)."""
        header = (self.header or Header()).as_bytes() + b"\n"
        yield header.replace(b"\n", b"\r\n") if crlf else header
        fh = self.body_fh()
        while True:
            chunk = fh.read(chunk_size)
            if not chunk:
                break
            yield chunk.replace(b"\n", b"\r\n") if crlf else chunk
        self._body.seek(0, os.SEEK_END)

    def write_message(self, out, crlf=False):
        """Copy the whole message into the file object `out`."""
        for chunk in self.iter_message(crlf=crlf):
            out.write(chunk)

    # -- plugin scratch files ---------------------------------------------------------
    def temp_file(self):
        """A path for a scratch file, removed with the transaction."""
        fd, path = tempfile.mkstemp(prefix="qpsmtpd-", dir=self.spool_dir)
        os.close(fd)
        self._temp_paths.append(path)
        return path

    def temp_dir(self):
        path = tempfile.mkdtemp(prefix="qpsmtpd-", dir=self.spool_dir)
        self._temp_paths.append(path)
        return path

    def close(self):
        """Free the spool and scratch files."""
        body, self._body = self._body, _CLOSED
        if not (self._spooled and _recycle(body, self.spool_dir)):
            try:
                body.close()
            except OSError:
                pass
        for path in self._temp_paths:
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    os.unlink(path)
                except OSError:
                    pass
        self._temp_paths = []
