"""queue/postfix-queue - hand each message to a running Postfix's cleanup service, the
way Postfix's own smtpd and pickup do, so Postfix queues and delivers it.

The client hears 250 only after cleanup has written the queue file to disk and
answered "status 0":

  250 Queued! <Message-Id> (Queue-Id: 4XcY2K1vQz)
A reason that starts with an enhanced status code decides by its class, as in Postfix's
smtpd (header_checks `REJECT 4.7.1 try later` gives 452); otherwise the status does:
  452 <cleanup's reason> or, without one:                      (DENYSOFT)
      service unavailable (#4.7.1)          cleanup deferred the message
      queue file write error (#4.3.0)       write error, or a proxy refusal
      internal protocol error (#4.3.0)      cleanup did not understand us
  552 <cleanup's reason> or, without one:                      (DENY)
      no recipients specified (#5.1.0)
      too many hops (#5.4.0)
      message file too big (#5.3.4)         message_size_limit
      message content rejected (#5.7.1)     header_checks/body_checks REJECT (needs
                                            FLAG_FILTER), a milter
  451 Unable to queue message (<reason>)    no cleanup service could be reached (DECLINED:
                                            a later queue plugin may still take it)
A connection lost while the message is being sent is a 452 (cleanup then throws
the incomplete queue file away).

Arguments:  [SOCKET] [FLAG_...]
  SOCKET   where cleanup listens: a unix socket path (default
           /var/spool/postfix/public/cleanup) or host:port of a cleanup service on
           an inet listener in master.cf (e.g. `127.0.0.1:10026 inet n - n - 0 cleanup`: cleanup
           insists on a process limit of 0)
  FLAG_... cleanup flags, OR'ed together (none by default):
           FLAG_BOUNCE, FLAG_FILTER (header_checks, body_checks, content_filter),
           FLAG_HOLD (put on hold), FLAG_DISCARD (drops every message: do not use),
           FLAG_BCC_OK (recipient_bcc_maps ...), FLAG_MAP_OK (virtual_alias_maps ...),
           FLAG_MILTER (non_smtpd_milters), FLAG_SMTP_REPLY, FLAG_SMTPUTF8, FLAG_AUTOUTF8,
           FLAG_FILTER_ALL (FILTER+MILTER), FLAG_MASK_EXTERNAL (FILTER_ALL, BCC_OK and
           MAP_OK: what Postfix uses for mail from outside, usually what you want),
           FLAG_MASK_INTERNAL (MAP_OK), FLAG_MASK_EXTRA (HOLD+DISCARD), FLAG_NONE.
           A FLAG_ name we do not know is ignored with a warning (as in qpsmtpd).
  timeout S  seconds for each read or write, default 60

Config file cleanup_sockets: sockets (path or host:port), one a line, tried in order
until one answers; it replaces SOCKET. The environment variable POSTFIXQUEUE (when the
server starts) replaces both. A message whose client used SMTPUTF8 gets FLAG_SMTPUTF8.
The server's user must be allowed to reach the socket (Debian: group postdrop for
/var/spool/postfix/public). Notes: postfix-queue-flags, postfix-queue-sockets (what was
used). Hooks: queue.

Examples:
  queue/postfix-queue FLAG_MASK_EXTERNAL
  queue/postfix-queue /var/spool/postfix/public/cleanup FLAG_FILTER FLAG_MAP_OK
  queue/postfix-queue 127.0.0.1:10026

Differences from qpsmtpd: host:port is accepted as the first argument too; the
connection has a time-out; a failure after the message started is a 452, never a
DECLINED that would let another queue plugin deliver it a second time; a reason with a
4.x.x status is a temporary failure (qpsmtpd made every content rejection permanent).
"""

import os
import re
import time

from qpsmtpd_py.api import (
    DECLINED, DENY, DENYSOFT, LOGERROR, LOGINFO, LOGWARN, OK, Keyword, Number, Plugin,
    Positional, Text, stream_socket,
)

DEFAULT_SOCKET = "/var/spool/postfix/public/cleanup"

# src/global/cleanup_user.h (Postfix 3.7)
FLAGS = {"NONE": 0, "BOUNCE": 1 << 0, "FILTER": 1 << 1, "HOLD": 1 << 2, "DISCARD": 1 << 3,
         "BCC_OK": 1 << 4, "MAP_OK": 1 << 5, "MILTER": 1 << 6, "SMTP_REPLY": 1 << 7,
         "SMTPUTF8": 1 << 8, "AUTOUTF8": 1 << 9}
FLAGS["FILTER_ALL"] = FLAGS["FILTER"] | FLAGS["MILTER"]
FLAGS["MASK_EXTERNAL"] = FLAGS["FILTER_ALL"] | FLAGS["BCC_OK"] | FLAGS["MAP_OK"]
FLAGS["MASK_INTERNAL"] = FLAGS["MAP_OK"]
FLAGS["MASK_EXTRA"] = FLAGS["HOLD"] | FLAGS["DISCARD"]

STAT_BAD, STAT_WRITE, STAT_SIZE, STAT_CONT = 1 << 0, 1 << 1, 1 << 2, 1 << 3
STAT_HOPS, STAT_RCPT, STAT_PROXY, STAT_DEFER = 1 << 4, 1 << 6, 1 << 7, 1 << 8
SOFT = ((STAT_DEFER, "service unavailable (#4.7.1)"),
        (STAT_PROXY, "queue file write error (#4.3.0)"),
        (STAT_BAD, "internal protocol error (#4.3.0)"),
        (STAT_WRITE, "queue file write error (#4.3.0)"))
HARD = ((STAT_RCPT, "no recipients specified (#5.1.0)"),
        (STAT_HOPS, "too many hops (#5.4.0)"),
        (STAT_SIZE, "message file too big (#5.3.4)"),
        (STAT_CONT, "message content rejected (#5.7.1)"))

# src/global/rec_type.h
REC_TIME, REC_FROM, REC_RCPT, REC_MESG = b"T", b"S", b"R", b"M"
REC_NORM, REC_CONT, REC_XTRA, REC_END = b"N", b"L", b"X", b"E"
MAX_RECORD = 1024           # longer lines are split into continued records
_SOCKET = re.compile(r"^(/.+|[\w.-]+:\d+|\[[0-9a-fA-F:.]+\]:\d+)$")


class CleanupError(Exception):
    pass


class PostfixQueue(Plugin):
    arguments = (
        Positional("ARGS", Text(), (), "[SOCKET] then FLAG_... words", many=True),
        Keyword("timeout", Number(min=1, max=3600, unit="seconds"), 60.0,
                "for each read or write"),
    )

    def register(self, *args):
        words = list(self.args["ARGS"])
        self.socket = None
        if words and _SOCKET.match(words[0]) and not words[0].startswith("FLAG_"):
            self.socket = words.pop(0)
        self.flags = 0
        for word in words:
            if not re.fullmatch(r"FLAG_[A-Z0-9_]+", word):
                raise ValueError(f"'{word}' is neither a socket (/path or host:port, first) "
                                 "nor a cleanup flag (FLAG_...)")
            if word[5:] in FLAGS:
                self.flags |= FLAGS[word[5:]]
            else:
                self.log(LOGWARN, f"Ignoring unknown cleanup flag {word}")
        self.env_socket = os.environ.get("POSTFIXQUEUE") or None
        self.timeout = self.args["timeout"]

    def sockets(self):
        if self.env_socket:
            return [self.env_socket]
        return list(self.config_list("cleanup_sockets")) or [self.socket or DEFAULT_SOCKET]

    def hook_queue(self, transaction):
        flags = self.flags
        if "smtputf8" in (transaction.notes.get("mail_params") or {}):
            flags |= FLAGS["SMTPUTF8"]
        transaction.notes["postfix-queue-flags"] = flags
        sockets = self.sockets()
        transaction.notes["postfix-queue-sockets"] = sockets
        conn, where = self.open_cleanup(sockets)
        if conn is None:
            return DECLINED, f"Unable to queue message ({where})"
        try:
            with conn:
                queue_id = conn.attributes().get("queue_id", "")
                conn.send_attributes({"flags": str(flags)})
                conn.started = True
                send_message(conn, transaction)
                reply = conn.attributes()
        except (OSError, CleanupError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            self.log(LOGERROR, f"error, cleanup at {where}: {reason}")
            if not conn.started:
                return DECLINED, f"Unable to queue message ({reason})"
            return DENYSOFT, "queue file write error (#4.3.0)"
        return self.answer(reply, queue_id, transaction, where)

    def open_cleanup(self, sockets):
        """The first cleanup service that answers: (Cleanup, where) or (None, why not)."""
        why = "no cleanup socket configured"
        for where in sockets:
            try:
                return Cleanup.connect(where, self.timeout), where
            except OSError as exc:
                why = f"{where}: {exc.strerror or exc}"
                self.log(LOGERROR, f"error, cannot reach cleanup at {why}")
        return None, f"cannot reach the Postfix cleanup service: {why}"

    def answer(self, reply, queue_id, transaction, where):
        try:
            status = int(reply.get("status", ""))
        except ValueError:
            self.log(LOGERROR, f"error, cleanup at {where} sent no status: {reply}")
            return DENYSOFT, "internal protocol error (#4.3.0)"
        reason = reply.get("reason", "")
        if status == 0:
            msg_id = (transaction.header.get("Message-Id") or "").split("\n")[0].strip()
            self.log(LOGINFO, f"pass, queued as {queue_id} by cleanup at {where}")
            return OK, f"Queued! {msg_id} (Queue-Id: {queue_id})"
        if re.match(r"[45]\.\d{1,3}\.\d{1,3}\b", reason):     # as Postfix's smtpd: the
            code = DENYSOFT if reason[0] == "4" else DENY       # reason's status decides
            self.log(LOGWARN, f"fail, cleanup status {status}: {reason}")
            return code, reason
        for table, code in ((SOFT, DENYSOFT), (HARD, DENY)):
            for bit, text in table:
                if status & bit:
                    self.log(LOGWARN, f"fail, cleanup status {status}: {reason or text}")
                    return code, reason or text
        self.log(LOGERROR, f"error, cleanup status {status} unknown: {reason}")
        return DECLINED, reason or f"Unable to queue message ({status})"


class Cleanup:
    """One connection to cleanup: attribute lists (name\\0value\\0 ... \\0) and records."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.out = []
        self.out_size = 0
        self.started = False

    @classmethod
    def connect(cls, where, timeout):
        if where.startswith("/"):
            return cls(stream_socket(where, None, timeout))
        host, _, port = where.rpartition(":")
        return cls(stream_socket(host.strip("[]"), int(port), timeout))

    def attributes(self):
        attrs, key = {}, None
        while True:
            while b"\0" not in self.buf:
                data = self.sock.recv(4096)
                if not data:
                    raise CleanupError("cleanup closed the connection")
                self.buf += data
                if len(self.buf) > 65536:
                    raise CleanupError("cleanup sent an over-long attribute")
            word, self.buf = self.buf.split(b"\0", 1)
            text = word.decode("utf-8", "replace")
            if key is None:
                if not text:
                    return attrs
                key = text
            else:
                attrs[key], key = text, None

    def send_attributes(self, attrs):
        data = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in attrs.items())
        self.sock.sendall(data + b"\0")

    def record(self, kind, data=b""):
        length, size = len(data), b""
        while length >= 0x80:                 # little-endian base 128
            size += bytes([length & 0x7F | 0x80])
            length >>= 7
        self.out += [kind, size + bytes([length]), data]
        self.out_size += len(data) + 4
        if self.out_size >= 65536:
            self.flush()

    def flush(self):
        self.sock.sendall(b"".join(self.out))
        self.out, self.out_size = [], 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sock.close()


def send_message(conn, transaction):
    """Envelope, content (one record per line) and the end, as pickup sends them."""
    conn.record(REC_TIME, str(int(time.time())).encode())
    conn.record(REC_FROM, transaction.sender.address.encode("utf-8", "surrogateescape"))
    for rcpt in transaction.recipients:
        conn.record(REC_RCPT, rcpt.address.encode("utf-8", "surrogateescape"))
    conn.record(REC_MESG)
    pending = b""
    for chunk in transaction.iter_message():
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        for line in lines:
            message_line(conn, line)
    if pending:
        message_line(conn, pending)
    conn.record(REC_XTRA)
    conn.record(REC_END)
    conn.flush()


def message_line(conn, line):
    if line.endswith(b"\r"):
        line = line[:-1]
    while len(line) > MAX_RECORD:
        conn.record(REC_CONT, line[:MAX_RECORD])
        line = line[MAX_RECORD:]
    conn.record(REC_NORM, line)
