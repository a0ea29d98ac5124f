"""`karma_tool`: the karma plugin's records in the shared store, from the shell
(qpsmtpd's karma_tool commands: list, search, capture, release, prune)."""

import argparse
import sys
import time

from ..helpers import karma as K
from .store_cli import WHERE_EPILOG, add_store_options, open_from_args, run_tool

HEADER = "      IP Address                 Penalty        Naughty  Nice  Connects"


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="karma_tool", description="List, search and change karma's per-IP records "
        "(penalty_start:naughty:nice:connects) in the shared store (LMDB or Redis).",
        epilog=WHERE_EPILOG)
    add_store_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sub.add_parser("list", help="every record")
    p = sub.add_parser("search", help="records that are naughty, nice, both, or of one IP")
    p.add_argument("what", help="naughty | nice | both | IP")
    p = sub.add_parser("capture", help="send IP to the penalty box (now; one more naughty)")
    p.add_argument("ip")
    p = sub.add_parser("release", help="take IP out of the penalty box (naughty count cleared)")
    p.add_argument("ip")
    p = sub.add_parser("prune", help="delete records whose penalty started more than DAYS ago "
                                     "or that never had one (default 7), as qpsmtpd's tool does")
    p.add_argument("days", nargs="?", type=float, default=7.0)
    return parser.parse_args(argv)


def when(ts):
    return time.strftime("%a %b %e %H:%M", time.localtime(ts)) if ts else ""


def row(ip, record):
    penalty, naughty, nice, connects = record
    return f" {ip:<18}  {when(penalty):>24}    {naughty:>3}     {nice:>3}     {connects:>3}\n"


def run(args, out):
    store = open_from_args(args)
    table = store.table(K.TABLE)
    now = time.time()
    if args.command in ("capture", "release"):
        key = K.ip_key(args.ip)
        change = K.capture if args.command == "capture" else K.release
        new = table.update(key, lambda old: (change(old, now), 90 * 86400.0 if old is None else None))
        out.write(HEADER + "\n" + row(args.ip, K.parse(new)))
        return 0
    if args.command == "prune":
        count = pruned = 0
        for key, value in list(table.items()):
            count += 1
            penalty = K.parse(value)[0]
            if (now - penalty) / 86400.0 >= args.days:
                pruned += table.delete(key)
        out.write(f"pruned {pruned} of {count} records\n")
        return 0
    what = getattr(args, "what", None)
    wanted_ip = None
    if what is not None and what not in ("naughty", "nice", "both"):
        wanted_ip = K.ip_key(what)
    totals = {"naughty": 0, "nice": 0, "connects": 0}
    out.write(HEADER + "\n")
    for key, value in table.items():
        record = K.parse(value)
        _, naughty, nice, connects = record
        if (what == "naughty" and not naughty) or (what == "nice" and not nice) \
                or (what == "both" and not (naughty and nice)) \
                or (wanted_ip is not None and key.decode() != wanted_ip):
            continue
        out.write(row(K.key_ip(key), record))
        totals["naughty"] += naughty
        totals["nice"] += nice
        totals["connects"] += connects
    out.write(f"totals: {totals['naughty']} naughty, {totals['nice']} nice, "
              f"{totals['connects']} connects\n")
    return 0


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return run_tool("karma_tool", run, args, sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
