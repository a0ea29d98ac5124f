"""The MTA side of the milter protocol (Sendmail's mail filter API, spoken by
opendkim, opendmarc, rspamd's proxy, clamav-milter ...), protocol versions 2 and 6,
written from the protocol's description (no GPL library).

    milter = MilterSession("127.0.0.1:8891", timeout=10, version=6)
    milter.open()                                   # connect, option negotiation
    reply = milter.connect("client.example", "192.0.2.1", 4711, macros={...})
    reply.action                                    # 'continue', 'reject', 'tempfail' ...
    ...
    reply, changes = milter.eom(macros)             # end of message: the modifications

Every packet is a 4-byte length, a command byte and data. Each command waits at most
`timeout` seconds for the milter's answer (MilterError otherwise); the NO* flags
the milter negotiated keep us from sending a stage at all, the NR_* flags from
waiting for a reply to it.
"""

import socket
import struct
import time

from .scanner import parse_address

# actions a milter may take (SMFIF_*)
ADDHDRS, CHGBODY, ADDRCPT, DELRCPT, CHGHDRS, QUARANTINE, CHGFROM, ADDRCPT_PAR, SETSYMLIST = \
    (1 << n for n in range(9))
V2_ACTIONS = ADDHDRS | CHGBODY | ADDRCPT | DELRCPT | CHGHDRS
V6_ACTIONS = (1 << 9) - 1

# protocol flags (SMFIP_*): stages not to send, replies not to wait for
NOCONNECT, NOHELO, NOMAIL, NORCPT, NOBODY, NOHDRS, NOEOH, NR_HDR, NOUNKNOWN, NODATA, SKIP, \
    RCPT_REJ, NR_CONN, NR_HELO, NR_MAIL, NR_RCPT, NR_DATA, NR_UNKN, NR_EOH, NR_BODY, \
    HDR_LEADSPC = (1 << n for n in range(21))
V2_PROTOCOL = 0x7F
V6_PROTOCOL = ((1 << 21) - 1) & ~RCPT_REJ     # everything but rejected recipients

# macro stages of a v6 symbol list (SMFIM_*) and the command each belongs to
STAGE_MACRO_CMD = {0: b"C", 1: b"H", 2: b"M", 3: b"R", 4: b"T", 5: b"E", 6: b"N"}

# stage command -> (flag that skips it, flag that drops its reply)
STAGE_FLAGS = {
    b"C": (NOCONNECT, NR_CONN), b"H": (NOHELO, NR_HELO), b"M": (NOMAIL, NR_MAIL),
    b"R": (NORCPT, NR_RCPT), b"T": (NODATA, NR_DATA), b"L": (NOHDRS, NR_HDR),
    b"N": (NOEOH, NR_EOH), b"B": (NOBODY, NR_BODY), b"E": (0, 0),
}
FINAL = {b"c": "continue", b"a": "accept", b"r": "reject", b"t": "tempfail", b"y": "replycode",
         b"d": "discard", b"s": "skip", b"f": "conn_fail", b"4": "shutdown"}
CHANGES = {b"h": "add_header", b"i": "insert_header", b"m": "change_header", b"+": "add_rcpt",
           b"2": "add_rcpt", b"-": "delete_rcpt", b"b": "replace_body", b"e": "change_from",
           b"q": "quarantine"}
CHUNK = 65535
PACKET_LIMIT = 1 << 20            # the biggest packet we accept from a milter


class MilterError(Exception):
    """The milter could not be reached, broke the protocol, or did not answer in time."""


class Reply:
    """A milter's final answer to one command. action: continue, accept, reject,
    tempfail, replycode (code/text set), discard, skip, conn_fail, shutdown."""

    def __init__(self, action, text=""):
        self.action = action
        self.text = text
        self.code = text[:3] if action == "replycode" and text[:3].isdigit() else None

    def __repr__(self):
        return f"Reply({self.action!r}, {self.text!r})"


def _z(*parts):
    """NUL-terminated strings."""
    return b"".join(p.encode("utf-8", "surrogateescape") + b"\0" for p in parts)


def _strings(data):
    return [p.decode("utf-8", "surrogateescape") for p in data.split(b"\0")[:-1]] \
        if data.endswith(b"\0") else [p.decode("utf-8", "surrogateescape") for p in data.split(b"\0")]


def decode_change(cmd, data):
    """A modification packet -> (kind, fields...)."""
    kind = CHANGES[cmd]
    if kind in ("insert_header", "change_header"):
        index = struct.unpack(">I", data[:4])[0]
        name, value = (_strings(data[4:]) + ["", ""])[:2]
        return kind, index, name, value
    if kind == "add_header":
        name, value = (_strings(data) + ["", ""])[:2]
        return kind, name, value
    if kind == "replace_body":
        return kind, data
    strings = _strings(data) + [""]
    return (kind, strings[0], strings[1]) if kind in ("add_rcpt", "change_from") else (kind, strings[0])


class MilterSession:
    """One connection to one milter, for one SMTP connection."""

    def __init__(self, address, timeout=10.0, version=6, name="milter"):
        self.family, self.address = parse_address(address)
        self.timeout = float(timeout)
        self.offer_version = int(version)
        self.name = name
        self.sock = None
        self.version = None
        self.actions = 0
        self.protocol = 0
        self.symlists = {}             # command byte -> set of macro names the milter asked for

    def __str__(self):
        where = self.address if self.family == socket.AF_UNIX else "%s:%d" % self.address
        return f"milter {self.name} at {where}"

    # -- transport ----------------------------------------------------------------------------
    def open(self):
        deadline = time.monotonic() + self.timeout
        try:
            self.sock = socket.socket(self.family, socket.SOCK_STREAM)
            self.sock.settimeout(self.timeout)
            self.sock.connect(self.address)
        except OSError as exc:
            self.close()
            raise MilterError(f"{self}: {exc.strerror or exc}") from exc
        v6 = self.offer_version >= 6
        offer = (self.offer_version, V6_ACTIONS if v6 else V2_ACTIONS, V6_PROTOCOL if v6 else V2_PROTOCOL)
        self._send(b"O", struct.pack(">III", *offer))
        cmd, data = self._receive(deadline)
        if cmd != b"O" or len(data) < 12:
            raise MilterError(f"{self}: bad option negotiation reply {cmd!r}")
        version, actions, protocol = struct.unpack(">III", data[:12])
        self.version = min(version, self.offer_version)
        self.actions = actions & offer[1]
        self.protocol = protocol & offer[2]
        rest = data[12:]
        while self.version >= 6 and len(rest) >= 5:          # symbol lists (SMFIR_SETSYMLIST)
            stage = struct.unpack(">I", rest[:4])[0]
            names, _, rest = rest[4:].partition(b"\0")
            if stage in STAGE_MACRO_CMD:
                self.symlists[STAGE_MACRO_CMD[stage]] = set(names.decode("ascii", "replace").split())

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None

    def _send(self, cmd, data=b""):
        if self.sock is None:
            raise MilterError(f"{self}: not connected")
        try:
            self.sock.settimeout(self.timeout)
            self.sock.sendall(struct.pack(">I", len(data) + 1) + cmd + data)
        except OSError as exc:
            self.close()
            raise MilterError(f"{self}: {exc.strerror or exc}") from exc

    def _read(self, size, deadline):
        data = bytearray()
        while len(data) < size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.close()
                raise MilterError(f"{self}: no answer within {self.timeout:g}s")
            try:
                self.sock.settimeout(remaining)
                chunk = self.sock.recv(size - len(data))
            except socket.timeout:
                self.close()
                raise MilterError(f"{self}: no answer within {self.timeout:g}s") from None
            except OSError as exc:
                self.close()
                raise MilterError(f"{self}: {exc.strerror or exc}") from exc
            if not chunk:
                self.close()
                raise MilterError(f"{self}: connection closed by the milter")
            data += chunk
        return bytes(data)

    def _receive(self, deadline):
        if self.sock is None:
            raise MilterError(f"{self}: not connected")
        length = struct.unpack(">I", self._read(4, deadline))[0]
        if not 1 <= length <= PACKET_LIMIT:
            self.close()
            raise MilterError(f"{self}: bad packet length {length}")
        packet = self._read(length, deadline)
        return packet[:1], packet[1:]

    @property
    def leading_space(self):
        """Header values go to and come from the milter with their leading space."""
        return bool(self.protocol & HDR_LEADSPC)

    @property
    def can_skip(self):
        """The milter may answer a body chunk with `skip` (no more body wanted)."""
        return bool(self.protocol & SKIP)

    # -- commands -----------------------------------------------------------------------------
    def skips(self, cmd):
        return bool(self.protocol & STAGE_FLAGS[cmd][0])

    def macros(self, cmd, values):
        """Send the macros for stage `cmd` (those the milter asked for, if it said)."""
        wanted = self.symlists.get(cmd)
        pairs = [(k, v) for k, v in values.items() if v is not None and (wanted is None or k in wanted)]
        if pairs:
            self._send(b"D", cmd + b"".join(_z(k, str(v)) for k, v in pairs))

    def command(self, cmd, data=b"", macros=None):
        """Send one stage; its final Reply, or None when the milter skips the stage or
        asked for no reply. Modifications are only valid at end of message."""
        if self.skips(cmd):
            return None
        if macros:
            self.macros(cmd, macros)
        self._send(cmd, data)
        if self.protocol & STAGE_FLAGS[cmd][1]:
            return None
        reply, changes = self._replies()
        if changes:
            raise MilterError(f"{self}: modification before end of message")
        return reply

    def _replies(self):
        deadline = time.monotonic() + self.timeout
        changes = []
        while True:
            cmd, data = self._receive(deadline)
            if cmd in FINAL:
                text = _strings(data)[0] if data else ""
                return Reply(FINAL[cmd], text), changes
            if cmd in CHANGES:
                changes.append(decode_change(cmd, data))
            elif cmd != b"p":                   # progress: still working
                self.close()
                raise MilterError(f"{self}: unknown reply {cmd!r}")

    def connect(self, hostname, ip, port, macros=None):
        if ip is None:
            data = _z(hostname or "unknown") + b"U"
        else:
            family = b"6" if ":" in ip else b"4"
            data = _z(hostname or f"[{ip}]") + family + struct.pack(">H", int(port or 0)) + _z(ip)
        return self.command(b"C", data, macros)

    def helo(self, host, macros=None):
        return self.command(b"H", _z(host), macros)

    def mail(self, args, macros=None):
        return self.command(b"M", _z(*args), macros)

    def rcpt(self, args, macros=None):
        return self.command(b"R", _z(*args), macros)

    def data(self, macros=None):
        if self.version < 6:
            return None
        return self.command(b"T", b"", macros)

    def header(self, name, value):
        return self.command(b"L", _z(name, value))

    def eoh(self, macros=None):
        return self.command(b"N", b"", macros)

    def body(self, chunk):
        return self.command(b"B", chunk)

    def eom(self, macros=None):
        """End of message: (final Reply, [modifications])."""
        if macros:
            self.macros(b"E", macros)
        self._send(b"E")
        return self._replies()

    def abort(self):
        self._send(b"A")

    def quit(self):
        try:
            self._send(b"Q")
        except MilterError:
            pass
        self.close()
