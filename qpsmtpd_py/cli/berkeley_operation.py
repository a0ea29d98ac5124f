"""`berkeley_operation`: the admin tool of berkeley_ipblacklist's table in the
shared store: add, remove, list, expire, and add the top N IPs of a log pipeline.

    grep 'relaying denied' /var/log/qpsmtpd.log | awk '{print $NF}' | sort | uniq -c \\
        | berkeley_operation --config /etc/qpsmtpd add - --top 20 --min-count 5 --ttl 86400
"""

import argparse
import ipaddress
import sys
import time

from ..helpers import tokenbucket as TB
from .store_cli import add_store_options, open_from_args, run_tool
from .store_tool import show


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="berkeley_operation", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Add, remove and list blacklisted IPs of berkeley_ipblacklist (a table "
                    "in the shared store, LMDB or Redis).", epilog=__doc__.split("\n\n", 1)[1])
    add_store_options(parser)
    parser.add_argument("--filename", default=TB.DEFAULT_FILE,
                        help="the plugins' filename argument (names the table)")
    parser.add_argument("--ignore", action="store_true",
                        help="work on the ignore table (berkeley_ipblacklist_ignore)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p = sub.add_parser("add", help="blacklist IPs (listed whatever the method); '-' reads "
                                   "lines 'IP' or 'COUNT IP' (uniq -c) from stdin")
    p.add_argument("ips", nargs="+", metavar="IP")
    p.add_argument("--ttl", type=float, metavar="S", help="for S seconds (default: until removed)")
    p.add_argument("--reason", default="", help="a note kept with the entry")
    p.add_argument("--top", type=int, metavar="N", help="stdin: only the N IPs counted most")
    p.add_argument("--min-count", type=int, default=1, metavar="N",
                   help="stdin: only IPs counted at least N times")
    p = sub.add_parser("remove", help="forget IPs (exit 1 if one was not there)")
    p.add_argument("ips", nargs="+", metavar="IP")
    sub.add_parser("list", help="IP, state (listed or bucket tokens), expiry")
    sub.add_parser("expire", help="delete expired entries (LMDB; Redis expires itself)")
    return parser.parse_args(argv)


def read_counts(lines):
    """'IP' or 'COUNT IP' lines -> {ip: total count}; other lines are skipped."""
    counts = {}
    for line in lines:
        words = line.split()
        if len(words) == 1:
            count, ip = 1, words[0]
        elif len(words) == 2 and words[0].isdigit():
            count, ip = int(words[0]), words[1]
        else:
            continue
        try:
            ip = str(ipaddress.ip_address(ip))
        except ValueError:
            continue
        counts[ip] = counts.get(ip, 0) + count
    return counts


def targets(args, stdin):
    ips = [ip for ip in args.ips if ip != "-"]
    for ip in ips:
        ipaddress.ip_address(ip)                      # ValueError names a bad one
    if "-" in args.ips:
        counts = read_counts(stdin)
        ranked = sorted((c, ip) for ip, c in counts.items() if c >= args.min_count)
        ranked.sort(key=lambda item: (-item[0], item[1]))
        if args.top is not None:
            ranked = ranked[:args.top]
        ips += [ip for _, ip in ranked]
    return ips


def run(args, out, stdin):
    store = open_from_args(args)
    name = TB.table_name(args.filename) + (".ignore" if args.ignore else "")
    table = store.table(name)
    now = time.time()
    if args.command == "add":
        ips = targets(args, stdin)
        for ip in ips:
            table.set(ip, f"L:{now:.0f}:{args.reason}", ttl=args.ttl)
        out.write(f"added {len(ips)} to {name}\n")
        return 0
    if args.command == "remove":
        missing = [ip for ip in args.ips if not table.delete(ip)]
        for ip in missing:
            sys.stderr.write(f"berkeley_operation: {ip} was not in {name}\n")
        return 1 if missing else 0
    if args.command == "expire":
        out.write(f"{table.expire()}\n")
        return 0
    for key, value, expires in table.entries():
        if value.startswith(b"L:"):
            state = "listed " + show(value.split(b":", 2)[2]) if value.count(b":") >= 2 else "listed"
        else:
            state = "bucket " + show(value)
        until = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(expires)) if expires else "-"
        out.write(f"{show(key)}\t{state.strip()}\t{until}\n")
    return 0


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return run_tool("berkeley_operation", run, args, sys.stdout, sys.stdin)


if __name__ == "__main__":
    sys.exit(main())
