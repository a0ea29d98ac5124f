"""A TCP proxy in front of a real daemon (spamd, clamd), run as its own process so a
test can kill it with SIGKILL in the middle of a scan: from the plugin's side that
is exactly a scanner daemon that died mid-scan, without touching the shared daemon.

    python t/stubs/tcpproxy.py TARGET [DIE_AT]     TARGET: host:port or /unix/socket

Prints `listening PORT` once, then for each connection `up N` (client bytes
forwarded so far) and `client-eof` when the client half-closes, flushing each
line. DIE_AT (a byte count, or `eof`) makes the proxy SIGKILL itself as soon as it
has forwarded that much of the request (or the client's half-close) to the daemon,
before any answer can come back: the daemon has the request, the client never gets
an answer, exactly as when the daemon is killed mid-scan (no race with an outside
killer).
"""

import os
import signal
import socket
import sys
import threading


def target_socket(target):
    if target.startswith("/"):
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(target)
        return sock
    host, _, port = target.rpartition(":")
    return socket.create_connection((host, int(port)))


def say(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


DIE_AT = sys.argv[2] if len(sys.argv) > 2 else None


def die():
    say("dying")
    os.kill(os.getpid(), signal.SIGKILL)


def pump(src, dst, report):
    total = 0
    try:
        while True:
            data = src.recv(65536)
            if not data:
                if report:
                    say("client-eof")
                dst.shutdown(socket.SHUT_WR)
                if report and DIE_AT == "eof":
                    die()
                return
            dst.sendall(data)
            total += len(data)
            if report:
                say(f"up {total}")
                if DIE_AT not in (None, "eof") and total >= int(DIE_AT):
                    die()
    except OSError:
        pass


def serve(conn, target):
    upstream = target_socket(target)
    threading.Thread(target=pump, args=(upstream, conn, False), daemon=True).start()
    pump(conn, upstream, True)


def main():
    target = sys.argv[1]
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    say(f"listening {listener.getsockname()[1]}")
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn, target), daemon=True).start()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        os._exit(0)
