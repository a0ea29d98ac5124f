"""The scoreboard: one slot per child in anonymous shared memory, made by the
master before it forks, read and written by every process without locks.

A slot says what its child is doing (starting, idle, busy), since when (updated
whenever the child makes progress, so it doubles as a heartbeat: see liveness.py)
and, while busy, the client IP; also when its session began and how long its
previous one lasted (the master's estimate of how fast children free up, for
--grow-wait). Times are CLOCK_MONOTONIC, which every process on the host shares.
The master reads it to size the pool, to find hung children and for its process
title; children read it to count connections per IP (--max-from-ip). Only the
master frees a slot, when it reaps the child, so a child killed with -9 never
leaves a connection counted.

Every write copies ready-made bytes into the slot (struct.pack_into would first
zero the region, so a reader could see a BUSY slot with `since` 0), with the IP
written before the state, so a reader that sees BUSY also sees its IP. A racing
reader may get a slot that is a moment out of date; for the per-IP count that
errs on the side of counting a connection twice, never of missing one; for the
turnover, a session's start or length a moment old.
"""

import collections.abc
import mmap
import struct
import time

FREE, STARTING, IDLE, BUSY = 0, 1, 2, 3
STATE_NAMES = {FREE: "free", STARTING: "starting", IDLE: "idle", BUSY: "busy"}

_SLOT = struct.Struct("=iBxxxd46s2xdd")      # pid, state, since, ip (NUL padded),
_IP_OFFSET = 16                               # session start, last session's seconds
_IP_SIZE = 46
_SESSION_OFFSET = 64
_SESSION = struct.Struct("=dd")
MIN_SESSION = 0.001                           # seconds: no SMTP session is shorter
_IP_NAMES_MAX = 4096                          # decoded IPs kept (busy_addrs)


class Scoreboard:
    def __init__(self, slots, clock=time.monotonic):
        self.slots = slots
        self.clock = clock
        self.mem = mmap.mmap(-1, _SLOT.size * slots)
        self._ip_names = {}                   # an IP field's bytes -> its text

    # -- master ------------------------------------------------------------------------------
    def claim(self):
        """A free slot index for a child about to be forked (None when full)."""
        for index in range(self.slots):
            if self.read(index)[1] == FREE:
                self._write(index * _SLOT.size, _SLOT.pack(0, STARTING, self.clock(), b"", 0.0, 0.0))
                return index
        return None

    def set_pid(self, index, pid):
        self._write(index * _SLOT.size, struct.pack("=i", pid))

    def release(self, index):
        self._write(index * _SLOT.size, _SLOT.pack(0, FREE, 0.0, b"", 0.0, 0.0))

    def _write(self, offset, data):
        self.mem[offset:offset + len(data)] = data

    # -- children ----------------------------------------------------------------------------
    def mark(self, index, state, ip=""):
        """A child's own slot: idle, or busy with a client IP. Becoming busy starts
        the session's clock; going idle records how long the session lasted."""
        offset = index * _SLOT.size
        now = self.clock()
        started, last = _SESSION.unpack_from(self.mem, offset + _SESSION_OFFSET)
        if state == BUSY:
            if self.mem[offset + 4] != BUSY:
                self._write(offset + _SESSION_OFFSET, _SESSION.pack(now, last))
        elif started:
            self._write(offset + _SESSION_OFFSET, _SESSION.pack(0.0, now - started))
        self._write(offset + _IP_OFFSET, ip.encode("ascii")[:_IP_SIZE].ljust(_IP_SIZE, b"\0"))
        self._write(offset + 4, struct.pack("=Bxxxd", state, now))

    def heartbeat(self, index):
        """The child is making progress (liveness.py)."""
        self._write(index * _SLOT.size + 8, struct.pack("=d", self.clock()))

    # -- everyone ----------------------------------------------------------------------------
    def read(self, index):
        """(pid, state, since, ip) of one slot."""
        pid, state, since, ip, _, _ = _SLOT.unpack_from(self.mem, index * _SLOT.size)
        return pid, state, since, ip.rstrip(b"\0").decode("ascii", "replace")

    def states(self):
        """The state byte of every slot, read in one go (the master asks after
        every connection, so this must be cheap)."""
        return self.mem[4::_SLOT.size]

    def busy_addrs(self, exclude=None):
        """IPs of every busy child but `exclude` (child_addrs for pre-connection; the
        master's per-IP counts at every round of hand-offs). Read from one copy of
        the board: within a slot the state comes before the IP, so a BUSY state
        read means its IP (written first) is read too."""
        board = self.mem[:]
        size = _SLOT.size
        names = self._ip_names
        out = []
        for index, state in enumerate(board[4::size]):
            if state == BUSY and index != exclude:
                start = index * size + _IP_OFFSET
                raw = board[start:start + _IP_SIZE]
                ip = names.get(raw)
                if ip is None:
                    ip = raw.rstrip(b"\0").decode("ascii", "replace")
                    if len(names) >= _IP_NAMES_MAX:
                        names.clear()
                    names[raw] = ip
                if ip:
                    out.append(ip)
        return out

    def lazy_busy_addrs(self, exclude=None):
        """busy_addrs, read only if a plugin looks at it (BusyAddrs)."""
        return BusyAddrs(self, exclude)

    def counts(self, indexes):
        """{state: number} over the given slots."""
        states = self.states()
        result = {STARTING: 0, IDLE: 0, BUSY: 0}
        for index in indexes:
            state = states[index]
            if state in result:
                result[state] += 1
        return result

    def turnover(self, indexes):
        """(busy children among `indexes`, how many clients a second they are
        expected to free up for): the sum over busy children of one over the
        expected length of each one's session, which is the longer of its
        previous session and twice the current one's age (a session seen midway
        has, on average, half of it behind it), at least MIN_SESSION. A child
        stuck with a slow client adds almost nothing; a fresh child's slow first
        session (cold, its first DNS lookups) holds back only itself."""
        now = self.clock()
        busy, rate = 0, 0.0
        size = _SLOT.size
        for index in indexes:
            offset = index * size
            if self.mem[offset + 4] != BUSY:
                continue
            started, last = _SESSION.unpack_from(self.mem, offset + _SESSION_OFFSET)
            busy += 1
            age = now - started if started else 0.0
            rate += 1.0 / max(last, 2 * age, MIN_SESSION)
        return busy, rate

    def short_of_spares(self, wanted):
        """Fewer than `wanted` children idle or starting, and a slot free to fork one
        into: a child that has just taken a client wakes the master only then."""
        states = self.states()
        return states.count(IDLE) + states.count(STARTING) < wanted and FREE in states

    def totals(self):
        """{state: number} over every slot: the master's counts of its whole pool
        (a slot that is not free is a child's, from claim() until its release())."""
        states = self.states()
        return {STARTING: states.count(STARTING), IDLE: states.count(IDLE),
                BUSY: states.count(BUSY)}

    def close(self):
        self.mem.close()


class BusyAddrs(collections.abc.Sequence):
    """child_addrs for pre-connection plugins: the scoreboard is read (every slot,
    ~1 us each) the first time a plugin looks, not for every connection that
    only karma's or connection_shaper's pre-connection hook sees."""

    def __init__(self, board, exclude):
        self.board, self.exclude, self._addrs = board, exclude, None

    def _list(self):
        if self._addrs is None:
            self._addrs = self.board.busy_addrs(self.exclude)
        return self._addrs

    def __len__(self):
        return len(self._list())

    def __getitem__(self, index):
        return self._list()[index]

    def __iter__(self):
        return iter(self._list())

    def __eq__(self, other):
        return self._list() == (list(other) if isinstance(other, collections.abc.Sequence) else other)

    def __repr__(self):
        return repr(self._list())
