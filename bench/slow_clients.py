#!/usr/bin/env python3
"""Clients that take their time (a remote MTA's round trips, played on loopback by
sleeping before each command): does `--grow-wait` still let the growing pool grow
for them? Runs qpsmtpd-prefork --children 60 --idle-children 5 with --grow-wait 0.1
(the default) and 0 (grow at once), N threads each sending one message per session
in a loop for a while, and reports messages/second, the greeting latency (median
and worst) and the most children seen. Run by hand (not a test):

    bench/.venv-debian/bin/python bench/slow_clients.py [--clients 50] [--rtt 0.02]
"""

import argparse
import os
import socket
import statistics
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from bench.run import BIN, Server, process_tree, write_config  # noqa: E402


def reply(sock, buf):
    """Read one (possibly multi-line) reply; returns (code, leftover bytes)."""
    while True:
        while b"\r\n" not in buf:
            chunk = sock.recv(4096)
            if not chunk:
                raise EOFError("connection closed")
            buf += chunk
        line, buf = buf.split(b"\r\n", 1)
        if line[3:4] != b"-":
            return int(line[:3]), buf


def session(port, rtt):
    """One message; returns the greeting latency. Each command waits `rtt` first."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        code, buf = reply(sock, b"")
        greeted = time.monotonic() - started
        for line, want in ((b"EHLO client.example.test", 250), (b"MAIL FROM:<a@example.test>", 250),
                           (b"RCPT TO:<rcpt@example.test>", 250), (b"DATA", 354),
                           (b"Subject: slow\r\n\r\nbody\r\n.", 250), (b"QUIT", 221)):
            time.sleep(rtt)
            sock.sendall(line + b"\r\n")
            code, buf = reply(sock, buf)
            if code != want:
                raise RuntimeError(f"{line!r}: {code}")
    return greeted


def run(grow_wait, args, base, port):
    argv = [os.path.join(BIN, "qpsmtpd-prefork"), "--listen-address", "127.0.0.1", "--port",
            str(port), "-H", "--config", os.path.join(base, "config"), "--children", "60",
            "--idle-children", "5", "--grow-wait", str(grow_wait)]
    if os.geteuid() == 0:
        argv += ["--user", "nobody"]
    server = Server(f"grow-wait-{grow_wait}", argv, port, dict(os.environ), base, 5).start()
    server.settle()
    latencies, sent, most, stop = [], [0], [0], threading.Event()

    def client():
        while not stop.is_set():
            latencies.append(session(port, args.rtt))
            sent[0] += 1

    def sample():
        while not stop.is_set():
            most[0] = max(most[0], len(process_tree(server.proc.pid)) - 1)
            time.sleep(0.05)

    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    sampler = threading.Thread(target=sample)
    try:
        t0 = time.monotonic()
        for t in threads + [sampler]:
            t.start()
        time.sleep(args.seconds)
        stop.set()
        for t in threads + [sampler]:
            t.join(60)
        wall = time.monotonic() - t0
    finally:
        server.stop()
    ms = sorted(x * 1000 for x in latencies)
    print(f"--grow-wait {grow_wait:<4}: {sent[0] / wall:6.1f} msg/s, greeting "
          f"median {statistics.median(ms):.1f} ms, 99th {ms[int(len(ms) * 0.99)]:.1f} ms, "
          f"worst {ms[-1]:.1f} ms, most children {most[0]}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rtt", type=float, default=0.02, help="seconds before each command")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--port", type=int, default=22700)
    args = parser.parse_args()
    base = tempfile.mkdtemp(prefix="qpsmtpd-bench-slow-")
    os.chmod(base, 0o755)
    spool = os.path.join(base, "spool")
    os.makedirs(spool)
    os.chmod(spool, 0o777)
    write_config(os.path.join(base, "config"), spool)
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}  {args.clients} clients, {args.rtt * 1000:.0f} ms "
          f"before each command, {args.seconds:.0f} s each", flush=True)
    for i, grow_wait in enumerate((0.1, 0)):
        run(grow_wait, args, base, args.port + i)


if __name__ == "__main__":
    main()
