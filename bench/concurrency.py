#!/usr/bin/env python3
"""Benchmark: what the number of sessions in flight does to a prefork child's CPU per
message. The same qpsmtpd-prefork (run.py's light chain, -H, user nobody) with C
pre-forked children is driven by smtp-source with S concurrent sessions, for several
(C, S) pairs; the master's CPU and the children's (live and reaped) are reported
separately. The code and the messages are the same in every row: what changes is how
many Python processes take turns on the machine's cores. Run by hand (not a test):

    .venv/bin/python bench/concurrency.py                      # the default pairs
    .venv/bin/python bench/concurrency.py --pairs 4:4,60:4,60:50 -n 5000

It listens on 127.0.0.1 only (no namespace needed: smtp-source connects to loopback).
"""

import argparse
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run as R  # noqa: E402  (process_tree, cpu_ms, write_config, SOURCE)


def task_ms(pid):
    """Run time of one process's own tasks (schedstat), children not included."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/schedstat") as fh:
            total += int(fh.read().split()[0])
    return total / 1e6


def measure(config, port, children, sessions, total):
    argv = [os.path.join(R.BIN, "qpsmtpd-prefork"), "-H", "--config", config,
            "--listen-address", "127.0.0.1", "--port", str(port), "--user", R.USER,
            "--children", str(children), "--idle-children", str(children),
            "--max-requests", "100000"]
    log = open(os.path.join(os.path.dirname(config), f"server-{port}.log"), "w")
    proc = subprocess.Popen(argv, stdout=log, stderr=log)
    try:
        deadline = time.time() + 30
        while len(R.process_tree(proc.pid)) <= children and time.time() < deadline:
            time.sleep(0.1)
        source = [*R.SOURCE, "-s", str(sessions), f"127.0.0.1:{port}"]
        subprocess.run([*source[:-1], "-m", str(min(total, 1000)), source[-1]], check=True)   # warm
        time.sleep(0.5)
        master0, tree0 = task_ms(proc.pid), R.cpu_ms(proc.pid)
        t0 = time.perf_counter()
        subprocess.run([*source[:-1], "-m", str(total), source[-1]], check=True)
        wall = time.perf_counter() - t0
        time.sleep(0.5)
        master, tree = task_ms(proc.pid) - master0, R.cpu_ms(proc.pid) - tree0
        return total / wall, master / total, (tree - master) / total
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", default="2:1,4:4,60:4,20:16,60:16,60:50",
                        help="children:sessions pairs (default %(default)s)")
    parser.add_argument("-n", type=int, default=8000, help="messages per pair")
    parser.add_argument("--port", type=int, default=22500)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="qpsmtpd-bench-conc-")
    os.chmod(work, 0o755)                        # the children (nobody) reach the spool
    spool = os.path.join(work, "spool")
    os.makedirs(spool, mode=0o700)
    nobody = pwd.getpwnam(R.USER)
    os.chown(spool, nobody.pw_uid, nobody.pw_gid)
    config = os.path.join(work, "config")
    R.write_config(config, spool)
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}  load {R.loadavg()}  {args.n} messages a pair")
    print("| children | sessions | msg/s | master CPU ms/msg | children CPU ms/msg |")
    print("|---|---|---|---|---|")
    try:
        for i, pair in enumerate(args.pairs.split(",")):
            children, sessions = (int(x) for x in pair.split(":"))
            rate, master, kids = measure(config, args.port + i, children, sessions, args.n)
            print(f"| {children} | {sessions} | {rate:.0f} | {master:.3f} | {kids:.3f} |", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
