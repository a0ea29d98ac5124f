"""A DNS proxy on loopback for tests and bench/: it forwards each UDP query to the
test nsd and answers after `delay` seconds (every query on its own, so delayed
answers overlap as a slow real server's would), counts the queries, and with
answer=False never answers at all (a dead server).

    with DNSProxy(("127.0.0.1", 5353), delay=1.0) as proxy:
        config.write("dns_servers", f"127.0.0.1:{proxy.port}")
        ...
        proxy.queries        -> [("2.0.0.127.dnsbl.test", "TXT"), ...]
"""

import socket
import threading
import time

import dns.message
import dns.rdatatype


class DNSProxy:
    def __init__(self, upstream, delay=0.0, answer=True):
        self.upstream = upstream
        self.delay = float(delay)
        self.answer = answer
        self.queries = []
        self._lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)           # so the serving thread sees a stop at once
        self.port = self.sock.getsockname()[1]
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop = True
        self._thread.join(2)
        self.sock.close()

    def count(self, name=None):
        """Queries received (for one name, case-insensitive, if given)."""
        with self._lock:
            if name is None:
                return len(self.queries)
            return sum(1 for q, _t in self.queries if q.lower() == name.lower().rstrip("."))

    def _serve(self):
        while not self._stop:
            try:
                data, client = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            received = time.monotonic()
            try:
                question = dns.message.from_wire(data).question[0]
                entry = (question.name.to_text(omit_final_dot=True),
                         dns.rdatatype.to_text(question.rdtype))
            except Exception:
                entry = ("<malformed>", "")
            with self._lock:
                self.queries.append(entry)
            if self.answer:
                threading.Thread(target=self._forward, args=(data, client, received),
                                 daemon=True).start()

    def _forward(self, data, client, received):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as up:
            up.settimeout(5)
            try:
                up.sendto(data, self.upstream)
                reply, _ = up.recvfrom(65535)
            except OSError:
                return
        wait = received + self.delay - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        try:
            self.sock.sendto(reply, client)
        except OSError:
            pass
