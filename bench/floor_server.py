#!/usr/bin/env python3
"""The floor: the least a pre-forked Python SMTP responder can cost. Canned replies,
no plugins, no parsing; same process model (N children in blocking accept). Its CPU
per message under smtp-source is what Python + the kernel cost before any of our
code runs, so `bench/run.py --servers floor,...` shows how much the engine adds.

    floor_server.py PORT CHILDREN
"""

import os
import signal
import socket
import sys


def serve(conn):
    conn.sendall(b"220 floor ESMTP\r\n")
    buf = b""
    data = False
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            return
        buf += chunk
        while True:
            if data:
                end = buf.find(b"\r\n.\r\n")
                if end < 0:
                    buf = buf[-4:]
                    break
                buf = buf[end + 5:]
                data = False
                conn.sendall(b"250 2.0.0 Queued\r\n")
                continue
            nl = buf.find(b"\n")
            if nl < 0:
                break
            line, buf = buf[:nl], buf[nl + 1:]
            verb = line[:4].upper()
            if verb == b"DATA":
                data = True
                buf = b"\r\n" + buf          # the terminator may follow at once
                conn.sendall(b"354 go ahead\r\n")
            elif verb == b"QUIT":
                conn.sendall(b"221 bye\r\n")
                return
            else:
                conn.sendall(b"250 ok\r\n")


def main():
    port, children = int(sys.argv[1]), int(sys.argv[2])
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(1024)
    pids = []
    for _ in range(children):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            while True:
                conn, _ = listener.accept()
                try:
                    serve(conn)
                except OSError:
                    pass
                conn.close()
        pids.append(pid)

    def stop(*_):
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    while True:
        try:
            os.wait()
        except ChildProcessError:
            return


if __name__ == "__main__":
    main()
