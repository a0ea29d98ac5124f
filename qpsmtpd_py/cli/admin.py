"""`qpsmtpd-admin`: one command for the running server and its store.

    qpsmtpd-admin [--metrics ADDR:PORT] status     children and what each is doing
    qpsmtpd-admin --pid-file PATH reload            HUP: reload config and plugins
    qpsmtpd-admin --pid-file PATH [--wait S] stop   TERM: graceful stop, wait for the end
    qpsmtpd-admin store ARGS...                     qpsmtpd-store (greylist, karma ... tables)
    qpsmtpd-admin karma ARGS...                     karma_tool

`status` asks the server's metrics process (`--metrics-listen`, which reads the shared
scoreboard) over HTTP, so it needs no privileges; reload and stop signal the master whose
pid is in --pid-file, or --pid (under systemd: `systemctl reload|stop UNIT` does the same).
Exit status: 0 done, 1 the server cannot be reached or did not stop in time, 64 usage.
"""

import argparse
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request

EX_USAGE = 64


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="qpsmtpd-admin", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--metrics", default="127.0.0.1:9125", metavar="ADDR:PORT",
                        help="the server's --metrics-listen address (default 127.0.0.1:9125)")
    parser.add_argument("--pid-file", metavar="PATH", help="the server's --pid-file")
    parser.add_argument("--pid", type=int, help="the master's pid (instead of --pid-file)")
    parser.add_argument("command", choices=["status", "reload", "stop", "store", "karma"])
    parser.add_argument("--wait", type=float, default=60.0, metavar="SECONDS",
                        help="stop: how long to wait for the master to exit (default 60)")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="store/karma: their arguments")
    return parser.parse_args(argv)


def status(address, out):
    try:
        with urllib.request.urlopen(f"http://{address}/status", timeout=5) as resp:
            data = json.load(resp)
    except (OSError, urllib.error.URLError, ValueError) as exc:
        sys.stderr.write(f"qpsmtpd-admin: no server answers on {address} (--metrics-listen): {exc}\n")
        return 1
    children = data.get("children", [])
    busy = sum(1 for c in children if c["state"] == "busy")
    out.write(f"master {data.get('master')}: {len(children)} children, {busy} busy\n")
    out.write(f"{'pid':>8}  {'state':<9} {'quiet s':>8}  client\n")
    for c in sorted(children, key=lambda c: c["pid"]):
        quiet = "" if c["since_progress"] is None else f"{c['since_progress']:.1f}"
        out.write(f"{c['pid']:>8}  {c['state']:<9} {quiet:>8}  {c['client'] or ''}\n")
    return 0


def master_pid(args):
    if args.pid:
        return args.pid
    if not args.pid_file:
        raise ValueError("reload and stop need --pid-file PATH or --pid N "
                         "(under systemd: systemctl reload|stop qpsmtpd-prefork)")
    with open(args.pid_file) as fh:
        return int(fh.read().split()[0])


def running(pid):
    """The process exists and has not exited (a zombie waiting for its parent has)."""
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except ProcessLookupError:
        return False
    except OSError:
        return True


def signal_master(args, signum, wait=None):
    pid = master_pid(args)
    os.kill(pid, signum)
    if wait is None:
        return 0
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if not running(pid):
            return 0
        time.sleep(0.1)
    sys.stderr.write(f"qpsmtpd-admin: master {pid} still running after {wait:g}s\n")
    return 1


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.command == "status":
            return status(args.metrics, sys.stdout)
        if args.command == "reload":
            return signal_master(args, signal.SIGHUP)
        if args.command == "stop":
            return signal_master(args, signal.SIGTERM, args.wait)
        if args.command == "store":
            from .store_tool import main as store_main
            return store_main(args.args)
        from .karma_tool import main as karma_main
        return karma_main(args.args)
    except (ValueError, OSError) as exc:
        sys.stderr.write(f"qpsmtpd-admin: {exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
