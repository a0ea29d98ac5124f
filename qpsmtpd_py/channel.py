"""Buffered, time-limited byte I/O to the client: a socket or a pair of pipes.

Replies are buffered and flushed before the next blocking read, so a pipelined
batch is answered with one write (RFC 2920 allows it) and never deadlocks.
Every read and write that moves bytes calls `progress` (the server's liveness
heartbeat, app.keepalive), so a slow but moving upload is never taken for a hang.
"""

import os
import select
import socket
import struct

from .errors import ClientGone, ClientTimeout  # noqa: F401  (re-exported)

_TIMEVAL = struct.Struct("ll")


class LineTooLong(Exception):
    """A command line exceeded the limit; the rest of it was read and dropped."""


class Channel:
    """Common buffering; subclasses provide _recv(timeout) and _send(data)."""

    def __init__(self, timeout=1200):
        self.timeout = timeout
        self.buffer = bytearray()
        self._out = []
        self.progress = None          # callable() after each read and write (liveness)

    # -- output ------------------------------------------------------------------
    def write(self, data):
        self._out.append(data)

    def flush(self):
        if self._out:
            data = b"".join(self._out)
            self._out = []
            self._send(data)
            if self.progress is not None:
                self.progress()

    # -- input ---------------------------------------------------------------------
    def fill(self, timeout=None):
        """Read more bytes into the buffer; raises ClientTimeout or ClientGone."""
        self.flush()
        data = self._recv(self.timeout if timeout is None else timeout)
        if not data:
            raise ClientGone("client closed the connection")
        if self.progress is not None:
            self.progress()
        self.buffer += data
        return len(data)

    def read_chunk(self):
        """Whatever the client sends next, bypassing the buffer (DATA reader)."""
        self.flush()
        data = self._recv(self.timeout)
        if not data:
            raise ClientGone("client closed the connection")
        if self.progress is not None:
            self.progress()
        return data

    def readline(self, limit):
        """One line ending in LF (CR before it kept), at most `limit` octets."""
        start = 0
        while True:
            index = self.buffer.find(b"\n", start)
            if index >= 0:
                line = bytes(self.buffer[:index + 1])
                del self.buffer[:index + 1]
                if len(line) > limit:
                    raise LineTooLong()
                return line
            if len(self.buffer) > limit:
                self._discard_rest_of_line()
                raise LineTooLong()
            start = len(self.buffer)
            self.fill()

    def _discard_rest_of_line(self):
        while True:
            index = self.buffer.find(b"\n")
            if index >= 0:
                del self.buffer[:index + 1]
                return
            self.buffer.clear()
            self.fill()

    def input_pending(self, timeout=0.0):
        """True when the client has sent bytes we have not read (earlytalker)."""
        if self.buffer:
            return True
        try:
            self.fill(timeout)
        except (ClientTimeout, ClientGone):
            return False
        return True

    def discard_input(self):
        """Forget everything the client sent ahead (STARTTLS injection defence)."""
        self.buffer.clear()

    def close(self):
        try:
            self.flush()
        except (ClientGone, OSError):
            pass


class SocketChannel(Channel):
    def __init__(self, sock, timeout=1200):
        super().__init__(timeout)
        self.sock = sock
        self._timed = (None, None)        # (socket, seconds) its kernel time-outs hold

    def _kernel_timeouts(self):
        """Make a plain TCP socket blocking with SO_RCVTIMEO/SO_SNDTIMEO = timeout:
        then each recv and send is one syscall, where a socket with a Python
        time-out polls before every call. False for TLS sockets (own path)."""
        sock, timeout = self.sock, self.timeout
        if type(sock) is not socket.socket or not timeout or timeout <= 0:
            return False
        if self._timed[0] is sock and self._timed[1] == timeout and sock.gettimeout() is None:
            return True
        try:
            timeval = _TIMEVAL.pack(int(timeout), int(timeout % 1 * 1000000))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
            sock.settimeout(None)
        except OSError:
            return False
        self._timed = (sock, timeout)
        return True

    def _recv(self, timeout):
        if self._kernel_timeouts():
            sock = self.sock
            try:
                if timeout != self.timeout and not _readable(sock, timeout):
                    raise ClientTimeout()         # a shorter wait (earlytalker) ran out
                return sock.recv(65536)
            except BlockingIOError:               # SO_RCVTIMEO ran out
                raise ClientTimeout()
            except OSError as exc:
                raise ClientGone(str(exc))
        if getattr(self.sock, "pending", None) and self.sock.pending():
            return self.sock.recv(65536)
        if self.sock.gettimeout() != timeout:     # settimeout costs a syscall
            self.sock.settimeout(timeout)
        try:
            return self.sock.recv(65536)
        except socket.timeout:
            raise ClientTimeout()
        except (ConnectionError, OSError) as exc:
            raise ClientGone(str(exc))

    def _send(self, data):
        try:
            if not self._kernel_timeouts() and self.sock.gettimeout() != self.timeout:
                self.sock.settimeout(self.timeout)
            self.sock.sendall(data)
        except (socket.timeout, OSError) as exc:
            raise ClientGone(str(exc))

    def close(self):
        super().close()
        try:
            self.sock.close()
        except OSError:
            pass


def _readable(sock, timeout):
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(max(0, timeout) * 1000))


class PipeChannel(Channel):
    """stdin/stdout when they are pipes (swaks --pipe, tests)."""

    def __init__(self, rfd=0, wfd=1, timeout=1200):
        super().__init__(timeout)
        self.rfd = rfd
        self.wfd = wfd

    def _recv(self, timeout):
        ready, _, _ = select.select([self.rfd], [], [], timeout)
        if not ready:
            raise ClientTimeout()
        try:
            return os.read(self.rfd, 65536)
        except OSError as exc:
            raise ClientGone(str(exc))

    def _send(self, data):
        view = memoryview(data)
        try:
            while view:
                written = os.write(self.wfd, view)
                view = view[written:]
        except OSError as exc:
            raise ClientGone(str(exc))


def channel_for_fd(fd_in=0, fd_out=1, timeout=1200):
    """A SocketChannel when fd_in is a socket (inetd, tcpserver, systemd), else pipes."""
    dup = os.dup(fd_in)
    try:
        sock = socket.socket(fileno=dup)
    except OSError:
        os.close(dup)
        return PipeChannel(fd_in, fd_out, timeout), None
    return SocketChannel(sock, timeout), sock
