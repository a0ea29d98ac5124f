"""logging/syslog - send log lines to syslog (rsyslog, syslog-ng, journald).

Config line (in config/logging, or config/plugins):

  logging/syslog [loglevel L] [priority P] [ident qpsmtpd] [facility LOG_MAIL] [logsock T]

Example:  logging/syslog loglevel LOGINFO priority LOG_NOTICE

Options:
  loglevel L   send lines at level L and more urgent (0-7 or LOGINFO ...);
               default: config/loglevel (LOGWARN when that file is absent)
  priority P   send every line at this syslog priority (LOG_NOTICE or 0-7)
               instead of the line's own level: LOGDEBUG -> LOG_DEBUG,
               LOGINFO -> LOG_INFO, ... LOGERROR -> LOG_ERR, LOGEMERG -> LOG_EMERG
  ident S      program name in the records (letters, digits, - _ .); default
               qpsmtpd; the pid is always added: qpsmtpd[1234]
  facility F   LOG_MAIL (default), LOG_LOCAL0 ... LOG_LOCAL7, LOG_DAEMON, LOG_USER ...
  logsock T    how to reach syslog, a comma-separated list tried in order:
                 native          the C library's syslog(3) (the default)
                 unix[:PATH]     datagrams to /dev/log (or PATH)
                 stream[:PATH]   a stream connection to /dev/log (or PATH)
                 udp[:HOST[:PORT]], tcp[:HOST[:PORT]]   default 127.0.0.1:514
                 console         /dev/console
               qpsmtpd's `logsock udp,unix` style lists work unchanged.

A multi-line message (a traceback) becomes one record per line.
Hooks: logging (always DECLINED, so other logging plugins also get every line).
"""

import os
import socket
import syslog
import time

from qpsmtpd_py.api import DECLINED, Checked, Keyword, LogLevel, Plugin, Text, line_text

TRANSPORTS = ("native", "unix", "stream", "udp", "tcp", "console")


class Syslog(Plugin):
    # (the checkers are looked up when the line is parsed: they are defined below)
    arguments = (
        Keyword("loglevel", LogLevel(), None, "send lines at this level and more urgent "
                "(default: config/loglevel)"),
        Keyword("priority", Checked(lambda t: syslog_constant(t, "priority", range(8)),
                                    "syslog priority (LOG_NOTICE or 0-7)", "P"), None,
                "send every line at this priority instead of its own level"),
        Keyword("ident", Text(r"[\w.-]+", "letters, digits, - _ ."), "qpsmtpd",
                "program name in the records"),
        Keyword("facility", Checked(lambda t: syslog_constant(t, "facility", range(0, 24 << 3, 8)),
                                    "syslog facility (LOG_MAIL, LOG_LOCAL0 ...)", "F"),
                "LOG_MAIL", "the syslog facility"),
        Keyword("logsock", Checked(lambda t: [parse_transport(x) for x in t.split(",")],
                                   "comma-separated native, unix[:PATH], stream[:PATH], "
                                   "udp[:HOST[:PORT]], tcp[:HOST[:PORT]], console", "T"),
                "native", "how to reach syslog, tried in order"),
    )

    def register(self, *args):
        level = self.args["loglevel"]
        self.level = self.app.loglevel if level is None else level
        self.priority = self.args["priority"]
        self.ident = self.args["ident"]
        self.facility = self.args["facility"]
        self.transports = self.args["logsock"]
        self.sender = None           # opened lazily, per process

    def hook_logging(self, transaction, level, hook, plugin, msg):
        if level > self.level or plugin == self.plugin_name:
            return DECLINED
        priority = self.priority if self.priority is not None else min(level, 7)
        for line in line_text(hook, plugin, msg).split("\n"):
            self.send(priority, line)
        return DECLINED

    def send(self, priority, text):
        for _attempt in range(2):            # a dead socket gets one reconnect
            if self.sender is None:
                self.sender = self.open_sender()
            try:
                self.sender.send(self.facility | priority, text)
                return
            except OSError:
                self.sender.close()
                self.sender = None

    def open_sender(self):
        for kind, target in self.transports:
            try:
                if kind == "native":
                    return NativeSender(self.ident, self.facility)
                return SocketSender(kind, target, self.ident)
            except OSError:
                continue
        return NullSender()


def syslog_constant(value, what, allowed):
    """'LOG_MAIL', 'mail' or a number -> the syslog module's value."""
    text = str(value).strip()
    if text.isdigit():
        number = int(text)
    else:
        name = text.upper()
        number = getattr(syslog, name if name.startswith("LOG_") else "LOG_" + name, None)
    if not isinstance(number, int) or number not in allowed:
        raise ValueError(f"is not a syslog {what}")
    return number


def parse_transport(text):
    """'unix:/dev/log' -> ('unix', '/dev/log'); 'udp' -> ('udp', ('127.0.0.1', 514))."""
    kind, _, rest = text.strip().partition(":")
    kind = kind.lower()
    if kind not in TRANSPORTS:
        raise ValueError(f"'{text}': use {', '.join(TRANSPORTS)}")
    if kind in ("unix", "stream"):
        return kind, rest or "/dev/log"
    if kind in ("udp", "tcp"):
        host, _, port = rest.partition(":")
        if port and not port.isdigit():
            raise ValueError(f"'{text}': port must be a number")
        return kind, (host or "127.0.0.1", int(port or 514))
    return kind, None


class NativeSender:
    """syslog(3) through Python's syslog module."""

    def __init__(self, ident, facility):
        syslog.openlog(ident, syslog.LOG_PID, facility)

    def send(self, priority, text):
        syslog.syslog(priority, text)

    def close(self):
        syslog.closelog()


class SocketSender:
    """RFC 3164 records on a unix, UDP or TCP socket, or /dev/console."""

    def __init__(self, kind, target, ident):
        self.kind = kind
        self.ident = ident
        self.sock = self.fh = None
        if kind == "console":
            self.fh = open("/dev/console", "w", encoding="utf-8", errors="replace")
            return
        family = socket.AF_UNIX if kind in ("unix", "stream") else socket.AF_INET
        if family == socket.AF_INET and ":" in target[0]:
            family = socket.AF_INET6
        sock_type = socket.SOCK_DGRAM if kind in ("unix", "udp") else socket.SOCK_STREAM
        self.sock = socket.socket(family, sock_type)
        try:
            self.sock.settimeout(5)
            self.sock.connect(target)
        except OSError:
            self.sock.close()
            raise

    def send(self, priority, text):
        stamp = time.strftime("%b %d %H:%M:%S", time.localtime())
        record = f"<{priority}>{stamp} {self.ident}[{os.getpid()}]: {text}"
        if self.fh is not None:
            self.fh.write(record[record.index(">") + 1:] + "\n")
            self.fh.flush()
            return
        data = record.encode("utf-8", "replace")
        if self.kind == "tcp":
            data += b"\n"
        elif self.kind == "stream":
            data += b"\0"
        self.sock.sendall(data)

    def close(self):
        for handle in (self.sock, self.fh):
            if handle is not None:
                try:
                    handle.close()
                except OSError:
                    pass


class NullSender:
    """No syslog reachable: lines are dropped (the next line tries again)."""

    def send(self, priority, text):
        raise OSError("no syslog transport available")

    def close(self):
        pass
