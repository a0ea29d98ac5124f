#!/usr/bin/env python3
"""CPU milliseconds and page faults per connection of qpsmtpd-forkserver, the
master and its children separately (issue 15 item 3).

The server runs in a loopback-only network namespace (as bench/run.py) with the
benchmark's light chain and -H; Postfix's smtp-source sends one message per
connection. The figures come from the master's /proc/PID/stat: its own run time
(schedstat, ns) and minor faults, and cutime+cstime / cminflt, which the kernel
adds up exactly for every reaped child. Only the load window counts (start-up and
warm-up are subtracted).

    flock /tmp/qpt-bench.lock .venv/bin/python bench/forkserver_cost.py [-n 600] [-s 10]
    # A/B: another checkout's code (its qpsmtpd_py/ on PYTHONPATH), rounds alternate
    ... bench/forkserver_cost.py --tree /tmp/old-checkout --tree . --rounds 3
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from bench.run import (CLK_TCK, PLUGINS, SOURCE, USER, Server, in_private_netns,  # noqa: E402
                       process_tree, rollup, write_config)


def reexec_in_netns():
    """Run this script again in a network namespace with only loopback up."""
    cmd = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
           sys.executable, os.path.abspath(__file__), *sys.argv[1:]]
    os.execvpe(cmd[0], cmd, dict(os.environ, QPB_NETNS="1"))


def master_counters(pid):
    """(own CPU ms, own faults, reaped children's CPU ms, their faults)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    ns = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/schedstat") as fh:
            ns += int(fh.read().split()[0])
    minflt, cminflt = int(fields[7]), int(fields[8])
    cutime, cstime = int(fields[13]), int(fields[14])
    return ns / 1e6, minflt, (cutime + cstime) * 1000.0 / CLK_TCK, cminflt


def wait_for(condition, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def one_run(tree, base, port, sessions, total, limit):
    """Start the forkserver from `tree`, load it, stop it -> per-connection figures."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TCP", "QPSMTPD", "RELAY"))}
    env["PYTHONPATH"] = os.path.abspath(tree)
    argv = [sys.executable, "-m", "qpsmtpd_py.server.forkserver", "--listen-address", "127.0.0.1",
            "--port", str(port), "--user", USER, "-H", "--config", os.path.join(base, "config"),
            "--limit-connections", str(limit)]
    server = Server("forkserver", argv, port, env, base, None).start()
    proc = server.proc
    try:
        for _ in range(20):              # a few sessions first (the master's lazy set-up)
            server._greets()
        wait_for(lambda: len(process_tree(proc.pid)) == 1)
        before = master_counters(proc.pid)
        t0 = time.perf_counter()
        out = subprocess.run([*SOURCE, "-s", str(sessions), "-m", str(total), f"127.0.0.1:{port}"],
                             capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if out.returncode != 0:
            raise SystemExit(f"smtp-source failed: {out.stderr.strip()[:300]}")
        wait_for(lambda: len(process_tree(proc.pid)) == 1)
        after = master_counters(proc.pid)
        pss = rollup(proc.pid) / 1024
    finally:
        server.stop()
    d = [(a - b) / total for a, b in zip(after, before)]
    return {"master_ms": d[0], "master_faults": d[1], "child_ms": d[2], "child_faults": d[3],
            "total_ms": d[0] + d[2], "total_faults": d[1] + d[3], "rate": total / wall,
            "master_pss": pss}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=600, help="connections (one message each)")
    parser.add_argument("-s", type=int, default=10, help="parallel sessions (smtp-source -s)")
    parser.add_argument("--limit", type=int, default=60, help="--limit-connections")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--tree", action="append", default=[],
                        help="checkout whose qpsmtpd_py to run (repeatable; default this one)")
    parser.add_argument("--port", type=int, default=21000)
    args = parser.parse_args()
    if not in_private_netns():
        reexec_in_netns()
    trees = args.tree or [ROOT]
    base = tempfile.mkdtemp(prefix="qpsmtpd-fscost-")
    os.chmod(base, 0o755)
    write_config(os.path.join(base, "config"), os.path.join(base, "spool"))
    os.makedirs(os.path.join(base, "spool"), mode=0o700)
    import pwd
    nobody = pwd.getpwnam(USER)
    os.chown(os.path.join(base, "spool"), nobody.pw_uid, nobody.pw_gid)
    results = {tree: [] for tree in trees}
    loads = []
    for _ in range(args.rounds):
        for tree in trees:
            loads.append(os.getloadavg()[0])
            results[tree].append(one_run(tree, base, args.port, args.s, args.n, args.limit))
    print(f"{args.n} connections, smtp-source -s {args.s}, chain {', '.join(PLUGINS)}; "
          f"load average {min(loads):.1f}-{max(loads):.1f}; median of {args.rounds} round(s)")
    print(f"{'tree':<28} {'total ms':>8} {'faults':>7} | {'master ms':>9} {'faults':>6} | "
          f"{'child ms':>8} {'faults':>6} | {'conn/s':>6} {'master PSS MB':>13}")
    for tree in trees:
        med = {k: statistics.median(r[k] for r in results[tree]) for k in results[tree][0]}
        print(f"{os.path.abspath(tree)[-28:]:<28} {med['total_ms']:8.2f} {med['total_faults']:7.0f} | "
              f"{med['master_ms']:9.2f} {med['master_faults']:6.0f} | {med['child_ms']:8.2f} "
              f"{med['child_faults']:6.0f} | {med['rate']:6.0f} {med['master_pss']:13.1f}")


if __name__ == "__main__":
    main()
