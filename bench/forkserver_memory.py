#!/usr/bin/env python3
"""Private memory of busy qpsmtpd-forkserver children (issue 15 item 6): what each
child adds to the total PSS, since the master's pages are shared by all.

N sessions are held in the middle of their second transaction (as bench/run.py's
busy_pss does); printed per checkout: the busy children's mean Private_Dirty, the
tree's total PSS and the master's PSS. Private_Dirty is exact and does not depend
on how many processes share a page, so small changes show (PSS totals move by a
few MB from run to run).

    .venv/bin/python bench/forkserver_memory.py [-n 20] [--tree DIR ...]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from bench.run import (Server, open_session, process_tree, rollup, send_small, talk,  # noqa: E402
                       write_config)


def measure(tree, base, port, n):
    env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
    argv = [sys.executable, "-m", "qpsmtpd_py.server.forkserver", "--allow-root",
            "--listen-address", "127.0.0.1", "--port", str(port), "-H",
            "--config", os.path.join(base, "config"), "--limit-connections", str(n + 10)]
    server = Server("forkserver", argv, port, env, base, None).start()
    socks = []
    try:
        for _ in range(n):
            s = open_session(port)
            send_small(s)
            talk(s, b"MAIL FROM:<src@example.test>\r\n", b"250")
            socks.append(s)
        time.sleep(1.0)
        pids = process_tree(server.proc.pid)
        busy = []
        for pid in pids[1:]:
            try:
                with open(f"/proc/{pid}/cmdline") as fh:
                    if "idle" not in fh.read():
                        busy.append(rollup(pid, "Private_Dirty"))
            except OSError:
                pass
        total = sum(rollup(pid) for pid in pids) / 1024
        return statistics.mean(busy), len(busy), len(pids) - 1, total, rollup(server.proc.pid) / 1024
    finally:
        for s in socks:
            s.close()
        server.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=20, help="busy sessions held")
    parser.add_argument("--tree", action="append", default=[],
                        help="checkout whose qpsmtpd_py to run (repeatable; default this one)")
    parser.add_argument("--port", type=int, default=21010)
    args = parser.parse_args()
    base = tempfile.mkdtemp(prefix="qpsmtpd-fsmem-")
    write_config(os.path.join(base, "config"), os.path.join(base, "spool"))
    for i, tree in enumerate(args.tree or [ROOT]):
        private, busy, children, total, master = measure(tree, base, args.port + i, args.n)
        print(f"{os.path.abspath(tree)}: {busy} busy of {children} children, private dirty "
              f"{private:.0f} kB per busy child; total PSS {total:.1f} MB, master {master:.1f} MB")


if __name__ == "__main__":
    main()
