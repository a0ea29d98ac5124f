"""Buffered, time-limited byte I/O to the client: a socket or a pair of pipes.

Replies are buffered and flushed before the next blocking read, so a pipelined
batch is answered with one write (RFC 2920 allows it) and never deadlocks.
Every read and write that moves bytes calls `progress` (the server's liveness
heartbeat, app.keepalive), so a slow but moving upload is never taken for a hang.

Reads run against the deadline of the current request (limits.py): a command
line must be complete within the time-out of the server starting to wait for
it, so a client dripping a byte now and then cannot stretch it; during DATA each
read has the time-out and the upload must keep min_data_rate on average. With
`limits` unset (tests of the channel itself) every read simply has `timeout`.
"""

import os
import select
import socket
import struct

from .clock import SYSTEM_CLOCK
from .errors import ClientGone, ClientTimeout  # noqa: F401  (re-exported)

_TIMEVAL = struct.Struct("ll")
#: a wait for the client wakes this often to look at the stress flag (only when a
#: server mode can signal stress; the kernel's SO_RCVTIMEO is then this long)
SLICE = 1.0


class LineTooLong(Exception):
    """A command line exceeded the limit; the rest of it was read and dropped."""


class Channel:
    """Common buffering; subclasses provide _recv(timeout) and _send(data)."""

    def __init__(self, timeout=1200):
        self.timeout = timeout
        self.buffer = bytearray()
        self._out = []
        self.progress = None          # callable() after each read and write (liveness)
        self.clock = SYSTEM_CLOCK     # its monotonic() times the requests
        self.limits = None            # limits.Policy of the session (None: a plain time-out)
        self.cap = None               # monotonic time no command wait may pass (session end)
        self.greeted = False          # the front process already sent the greeting
        self.pregreet = None          # the front saw the client talk before the greeting
        self.begin()

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

    # -- requests and their deadlines ------------------------------------------------
    def begin(self, data=False):
        """A new request: a command line (the default) or a DATA upload."""
        self._t0 = self._last = self.clock.monotonic()
        self._got = 0
        self._first = None
        self._data = data
        self._why = None

    def _left(self, now):
        """Seconds the next read may wait; <= 0 when the request is out of time
        (self.why then says why)."""
        limits = self.limits
        if limits is None:
            return self._last + self.timeout - now if self._data else self._t0 + self.timeout - now
        stressed = limits.stressed()
        wait = limits.wait(stressed)
        # the reason is kept as (format, value) and made into text only on a time-out
        if self._data:
            end, why = self._last + wait, ("sent nothing for {:g} seconds", wait)
            rate = limits.min_data_rate
            if rate:
                slow = self._t0 + max(limits.data_grace(stressed), self._got / rate)
                if slow < end:
                    end, why = slow, ("sent less than {} bytes/s of message data", rate)
        else:
            end, why = self._t0 + wait, ("sent no complete command within {:g} seconds", wait)
            line = limits.line_time(stressed)
            if line and self._first is not None and self._first + line < end:
                end, why = self._first + line, ("took over {:g} seconds for one command line", line)
            if self.cap is not None and self.cap < end:
                end, why = self.cap, ("session lasted too long (max_session_time)", None)
        self._why = (*why, stressed)
        return end - now

    @property
    def why(self):
        """Why the request ran out of time (after _left), or None."""
        if self._why is None:
            return None
        text, value, stressed = self._why
        return text.format(value) + (" (stress)" if stressed else "")

    def _take(self, data):
        """Bytes just read: EOF check, liveness, the request's counters."""
        if not data:
            raise ClientGone("client closed the connection")
        if self.progress is not None:
            self.progress()
        self._last = now = self.clock.monotonic()
        if self._first is None:
            self._first = now
        self._got += len(data)
        return data

    def _wait_read(self):
        """The next bytes from the client within the request's deadline."""
        self.flush()
        sliced = self.limits is not None and self.limits.sliced
        while True:
            left = self._left(self.clock.monotonic())
            if left <= 0:
                raise ClientTimeout(self.why)
            longest = SLICE if sliced else self.timeout
            # nearly the whole wait: take the whole (one syscall, no new socket time-out)
            wait = longest if left >= longest - 0.05 else left
            try:
                return self._take(self._recv(wait))
            except ClientTimeout:
                if not sliced:
                    self._left(self.clock.monotonic())     # the reason, for the log
                    raise ClientTimeout(self.why)
                # a slice passed: look at the deadline (and the stress flag) again

    # -- input ---------------------------------------------------------------------
    def fill(self, timeout=None):
        """Read more bytes into the buffer; raises ClientTimeout or ClientGone.
        With `timeout`, one wait of that length (earlytalker), not the request's."""
        if timeout is None:
            data = self._wait_read()
        else:
            self.flush()
            data = self._take(self._recv(timeout))
        self.buffer += data
        return len(data)

    def read_chunk(self):
        """Whatever the client sends next, bypassing the buffer (DATA reader)."""
        return self._wait_read()

    def readline(self, limit):
        """One line ending in LF (CR before it kept), at most `limit` octets: a new
        request (see begin)."""
        self.begin()
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
        """True when the client has sent bytes we have not read (earlytalker). When
        the front process greeted the client, its observation is the answer."""
        if self.pregreet is not None:
            early, self.pregreet = self.pregreet, None
            return early
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
        self._timed = (None, None, None)  # (socket, time-out, receive time-out) in the kernel

    def _kernel_timeouts(self):
        """Make a plain TCP socket blocking with SO_RCVTIMEO (the time-out, or SLICE
        when reads must wake to look at the stress flag) and SO_SNDTIMEO (the
        time-out): then each recv and send is one syscall, where a socket with a
        Python time-out polls before every call. False for TLS sockets (own path)."""
        sock, timeout = self.sock, self.timeout
        if type(sock) is not socket.socket or not timeout or timeout <= 0:
            return False
        receive = SLICE if self.limits is not None and self.limits.sliced else timeout
        wanted = (sock, timeout, receive)
        if self._timed == wanted and sock.gettimeout() is None:
            return True
        try:
            for option, seconds in ((socket.SO_RCVTIMEO, receive), (socket.SO_SNDTIMEO, timeout)):
                timeval = _TIMEVAL.pack(int(seconds), int(seconds % 1 * 1000000))
                sock.setsockopt(socket.SOL_SOCKET, option, timeval)
            sock.settimeout(None)
        except OSError:
            return False
        self._timed = wanted
        return True

    def _recv(self, timeout):
        if self._kernel_timeouts():
            sock = self.sock
            try:
                # a wait shorter than the kernel's (earlytalker, a request nearly out
                # of time) polls first; within 50 ms the kernel's is close enough
                if timeout < self._timed[2] - 0.05 and not _readable(sock, timeout):
                    raise ClientTimeout()
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
