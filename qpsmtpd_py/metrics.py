"""Prometheus metrics across forked children (`--metrics-listen ADDR:PORT`).

The master binds the HTTP port and makes a datagram socket pair before anything is
forked, then forks one metrics process. Every SMTP child inherits the sending end:
the events of a session (refusals, finished transactions, hook durations) are kept
in the child and sent at the session's end in a few datagrams (the kernel queues
only ~10 datagrams per socket: one per event would lose counts under load); a send
waits at most 0.2 s for room, so a lagging metrics process never holds a child up. The metrics process adds them up and answers `GET /metrics`
in Prometheus text format, with the children's states read from the shared
scoreboard. It dies with the master (PR_SET_PDEATHSIG).

Counters: qpsmtpd_connections_total{end}, qpsmtpd_transactions_total{result,plugin,code},
qpsmtpd_refusals_total{command,code,plugin}; histograms: qpsmtpd_session_seconds,
qpsmtpd_hook_seconds{hook}, qpsmtpd_scanner_seconds{scanner}, qpsmtpd_dns_seconds{type}; gauges: qpsmtpd_children{state}, qpsmtpd_store_bytes.
"""

import json
import os
import selectors
import signal
import socket
import time

SINK = None              # the sending socket, in the master and inherited by children
_pending = []            # this process's events since the last flush()
_MASTER = None           # the master's pid: its warm-up sessions (server/warmup.py) do not count
_BATCH = 200             # events per datagram
BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0)
_HELP = {
    "qpsmtpd_connections_total": ("counter", "SMTP connections by how they ended"),
    "qpsmtpd_transactions_total": ("counter", "mail transactions by result and deciding plugin"),
    "qpsmtpd_refusals_total": ("counter", "4xx/5xx replies by command, code and deciding plugin"),
    "qpsmtpd_session_seconds": ("histogram", "duration of SMTP sessions"),
    "qpsmtpd_hook_seconds": ("histogram", "time the plugins of one hook took"),
    "qpsmtpd_scanner_seconds": ("histogram", "time a content scanner (clamd, spamd ...) took"),
    "qpsmtpd_dns_seconds": ("histogram", "time a DNS lookup took (cached answers not counted)"),
    "qpsmtpd_children": ("gauge", "worker processes by state"),
    "qpsmtpd_store_bytes": ("gauge", "disk space the LMDB store (data.mdb) uses"),
}


class MetricsError(Exception):
    pass


# -- the children's side ----------------------------------------------------------------------
def count(name, labels=None, value=1):
    if SINK is not None and os.getpid() != _MASTER:
        _pending.append(["c", name, labels or {}, value])


def observe(name, seconds, labels=None):
    if SINK is not None and os.getpid() != _MASTER:
        _pending.append(["h", name, labels or {}, seconds])


def flush():
    """Send the events kept so far (the session's end calls this)."""
    global _pending
    if SINK is None or not _pending:
        return
    events, _pending = _pending, []
    for i in range(0, len(events), _BATCH):
        try:
            SINK.send(json.dumps(events[i:i + _BATCH]).encode())
        except OSError:      # no room within the time-out, or gone: metrics are best effort
            return


# -- the master's side --------------------------------------------------------------------------
def parse_listen(text):
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise MetricsError(f"--metrics-listen {text}: expected ADDR:PORT, e.g. 127.0.0.1:9125")
    return host.strip("[]") or "127.0.0.1", int(port)


class MetricsService:
    """Bound in the master before privileges are dropped; start() forks the process."""

    def __init__(self, listen):
        host, port = parse_listen(listen)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.http = socket.socket(family, socket.SOCK_STREAM)
        self.http.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.http.bind((host, port))
        except OSError as exc:
            self.http.close()
            raise MetricsError(f"--metrics-listen {listen}: {exc.strerror}") from None
        self.http.listen(16)
        self.recv, send = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        send.settimeout(0.2)
        global SINK
        SINK = send
        self.pid = None

    def start(self, board, prog, master_pid, listeners=(), store_path=None):
        """Fork the metrics process; the master keeps only the sending end. The
        process lets go of the SMTP `listeners` at once, so a stopping master's closed
        ports really refuse new clients."""
        global _MASTER
        _MASTER = master_pid
        pid = os.fork()
        if pid == 0:
            try:
                for listener in listeners:
                    listener.close()
                from .server.orphan import ask_for_death_signal
                for signum in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGCHLD):
                    signal.signal(signum, signal.SIG_DFL if signum == signal.SIGCHLD else signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.set_wakeup_fd(-1)
                signal.pthread_sigmask(signal.SIG_SETMASK, [])
                ask_for_death_signal(master_pid, signal.SIGTERM)
                try:
                    import setproctitle
                    setproctitle.setproctitle(f"{prog} metrics")
                except ImportError:
                    pass
                Aggregator(board, store_path).serve(self.http, self.recv)
            finally:
                os._exit(0)
        self.pid = pid
        self.http.close()
        self.recv.close()
        return pid

    def stop(self, timeout=2.0):
        """End the metrics process and reap it before the master exits: a process left
        behind is SIGKILLed (and logged) by systemd's KillMode=mixed at every stop."""
        if self.pid is None:
            return
        pid, self.pid = self.pid, None
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while True:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                return
            if done == pid:
                return
            if time.monotonic() >= deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return
            time.sleep(0.01)


class Aggregator:
    def __init__(self, board=None, store_path=None):
        self.board = board
        self.store_path = store_path  # LMDB store_dir: its data.mdb's size on disk
        self.counters = {}           # (name, labels tuple) -> value
        self.histograms = {}         # (name, labels tuple) -> [bucket counts..., sum, count]

    def add(self, event):
        kind, name, labels, value = event
        if name not in _HELP:
            return
        key = (name, tuple(sorted((str(k), str(v)) for k, v in labels.items())))
        if kind == "c":
            self.counters[key] = self.counters.get(key, 0) + value
        elif kind == "h":
            entry = self.histograms.setdefault(key, [0] * (len(BUCKETS) + 2))
            for i, bound in enumerate(BUCKETS):
                if value <= bound:
                    entry[i] += 1
            entry[-2] += value
            entry[-1] += 1

    def text(self):
        out, seen = [], set()

        def head(name):
            if name not in seen:
                seen.add(name)
                kind, text = _HELP[name]
                out.append(f"# HELP {name} {text}\n# TYPE {name} {kind}")

        for (name, labels), value in sorted(self.counters.items()):
            head(name)
            out.append(f"{name}{_labels(labels)} {value}")
        for (name, labels), entry in sorted(self.histograms.items()):
            head(name)
            for i, bound in enumerate(BUCKETS):
                out.append(f"{name}_bucket{_labels(labels + (('le', repr(bound)),))} {entry[i]}")
            out.append(f"{name}_bucket{_labels(labels + (('le', '+Inf'),))} {entry[-1]}")
            out.append(f"{name}_sum{_labels(labels)} {entry[-2]:.6f}")
            out.append(f"{name}_count{_labels(labels)} {entry[-1]}")
        if self.board is not None:
            from .server.scoreboard import STATE_NAMES, FREE
            states = {name: 0 for code, name in STATE_NAMES.items() if code != FREE}
            for index in range(self.board.slots):
                state = self.board.read(index)[1]
                if state != FREE:
                    states[STATE_NAMES[state]] += 1
            head("qpsmtpd_children")
            for name, n in sorted(states.items()):
                out.append(f'qpsmtpd_children{{state="{name}"}} {n}')
        if self.store_path:
            try:
                st = os.stat(os.path.join(self.store_path, "data.mdb"))
            except OSError:
                pass
            else:
                head("qpsmtpd_store_bytes")
                out.append(f"qpsmtpd_store_bytes {st.st_blocks * 512}")
        return "\n".join(out) + "\n"

    def status(self):
        """What every child is doing, from the scoreboard (qpsmtpd-admin status)."""
        from .server.scoreboard import STATE_NAMES, FREE
        children = []
        if self.board is not None:
            now = time.monotonic()
            for index in range(self.board.slots):
                pid, state, since, ip = self.board.read(index)
                if state != FREE:
                    children.append({"pid": pid, "state": STATE_NAMES.get(state, "?"),
                                     "since_progress": round(now - since, 1) if since else None,
                                     "client": ip or None})
        return {"master": os.getppid(), "children": children}

    def serve(self, http, recv):
        sel = selectors.DefaultSelector()
        sel.register(http, selectors.EVENT_READ, "http")
        sel.register(recv, selectors.EVENT_READ, "event")
        recv.setblocking(False)
        while True:
            for key, _ in sel.select():
                if key.data == "event":
                    self.drain(recv)
                else:
                    self.answer(http)

    def drain(self, recv):
        while True:
            try:
                data = recv.recv(65536)
            except BlockingIOError:
                return
            try:
                for event in json.loads(data):
                    self.add(event)
            except (ValueError, TypeError):
                pass

    def answer(self, http):
        try:
            conn, _ = http.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(2.0)
            request = b""
            try:
                while b"\r\n\r\n" not in request and len(request) < 8192:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    request += chunk
                path = request.split(b" ", 2)[1] if request.count(b" ") >= 2 else b""
                if path.split(b"?")[0] == b"/metrics":
                    body, status = self.text().encode(), "200 OK"
                    ctype = "text/plain; version=0.0.4; charset=utf-8"
                elif path == b"/status":
                    body, status = json.dumps(self.status()).encode(), "200 OK"
                    ctype = "application/json"
                else:
                    body, status, ctype = b"see /metrics\n", "404 Not Found", "text/plain"
                conn.sendall(f"HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nContent-Length: "
                             f"{len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
            except OSError:
                pass


def _labels(pairs):
    if not pairs:
        return ""
    def esc(v):
        return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in pairs) + "}"


def now():
    return time.monotonic()
