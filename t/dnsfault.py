"""A DNS relay for fault tests: it passes queries to the test nsd until told to go
silent, then swallows every query (a server that stopped answering mid-test).

    with DNSRelay() as relay:                # listens on 127.0.0.1:<relay.port>
        ... dns_servers = relay.address ...
        relay.silent = True                  # from now on nothing is answered

DNSRelay(silent=True) never answers at all. UDP only, loopback only.
"""

import os
import select
import socket
import threading


class DNSRelay:
    def __init__(self, silent=False, upstream=None):
        self.upstream = upstream or ("127.0.0.1", int(os.environ.get("QPT_DNS_PORT", "5353")))
        self.silent = silent
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.queries = 0
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        pending = {}                                   # upstream socket -> client address
        while not self._stop:
            ready, _, _ = select.select([self.sock, *pending], [], [], 0.1)
            for sock in ready:
                if sock is self.sock:
                    data, client = self.sock.recvfrom(65535)
                    self.queries += 1
                    if self.silent:
                        continue
                    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    out.sendto(data, self.upstream)
                    pending[out] = client
                else:
                    data = sock.recv(65535)
                    client = pending.pop(sock)
                    sock.close()
                    if not self.silent:
                        self.sock.sendto(data, client)
        for sock in pending:
            sock.close()

    def close(self):
        self._stop = True
        self._thread.join(2)
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
