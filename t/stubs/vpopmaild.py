"""A vpopmaild stand-in: greets `+OK`, answers `login user password` with `+OK+`
(and the user's details, ended by `.`) or `-ERR`, and `quit` with `+OK`.

    python t/stubs/vpopmaild.py PORT user@dom:pass ...     (or serve() in a thread)
"""

import socket
import socketserver
import sys
import threading


def handler_for(users):
    class Handler(socketserver.StreamRequestHandler):
        def handle(self):
            self.wfile.write(b"+OK \r\n")
            for raw in self.rfile:
                words = raw.decode("utf-8", "replace").split()
                if not words:
                    continue
                if words[0].lower() == "login" and len(words) == 3:
                    if users.get(words[1].lower()) == words[2]:
                        self.wfile.write(b"+OK+\r\nvpopmail_dir /home/vpopmail\r\n.\r\n")
                    else:
                        self.wfile.write(b"-ERR 3 login failed\r\n")
                elif words[0].lower() == "quit":
                    self.wfile.write(b"+OK \r\n")
                    return
                else:
                    self.wfile.write(b"-ERR 1 unknown command\r\n")
    return Handler


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve(users, port=0):
    """Start in a thread; returns the server (server.server_address[1] is the port)."""
    server = Server(("127.0.0.1", port), handler_for({k.lower(): v for k, v in users.items()}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


if __name__ == "__main__":
    pairs = dict(arg.split(":", 1) for arg in sys.argv[2:])
    srv = Server(("127.0.0.1", int(sys.argv[1])), handler_for(pairs))
    srv.serve_forever()
