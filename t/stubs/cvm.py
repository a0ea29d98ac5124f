"""A CVM (cvm-v1) stand-in on a unix socket: reads the request (byte 1, account\\0,
domain\\0, password\\0, \\0) and answers 0 (success, followed by minimal facts),
100 (bad credentials) or 111 (temporary failure, for the domain `tempfail`).

    python t/stubs/cvm.py SOCKET user@dom:pass ...     (or serve() in a thread)
"""

import socketserver
import sys
import threading


def handler_for(users):
    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            data = b""
            while not data.endswith(b"\0\0") or data.count(b"\0") < 4:
                chunk = self.request.recv(4096)
                if not chunk:
                    break
                data += chunk
            if data[:1] != b"\x01":
                self.request.sendall(bytes([111]))
                return
            account, domain, password = (p.decode("utf-8", "replace")
                                         for p in data[1:].split(b"\0")[:3])
            if domain == "tempfail":
                self.request.sendall(bytes([111]))
            elif users.get(f"{account}@{domain}".lower()) == password:
                # status 0, then facts: 1 = username, 2 = userid (NUL terminated)
                self.request.sendall(b"\x00" + b"\x01" + account.encode() + b"\0\x02" + b"1000\0\0")
            else:
                self.request.sendall(bytes([100]))
    return Handler


class Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True


def serve(path, users):
    server = Server(path, handler_for({k.lower(): v for k, v in users.items()}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


if __name__ == "__main__":
    pairs = dict(arg.split(":", 1) for arg in sys.argv[2:])
    Server(sys.argv[1], handler_for(pairs)).serve_forever()
