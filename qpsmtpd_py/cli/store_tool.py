"""`qpsmtpd-store`: look at and edit the shared store (LMDB, or Redis with
store_backend redis) from the shell (greylisting triplets, karma, counters),
safely while the server runs."""

import argparse
import os
import sys
import time

from ..helpers import greylist
from ..helpers.store import DEFAULT_DIR, StoreError
from .store_cli import add_store_options, open_from_args, run_tool

EPILOG = """\
The store directory is --dir, else the store_dir config file of --config DIR
(or of $QPSMTPD_CONFIG, ./config), else %s.
Keys and values are shown as UTF-8 with non-printable bytes escaped (\\xNN);
on the command line they are taken as UTF-8 text.

examples:
  qpsmtpd-store --config /etc/qpsmtpd list-tables
  qpsmtpd-store --dir /var/lib/qpsmtpd/store list karma --prefix 192.0.2.
  qpsmtpd-store --dir /var/lib/qpsmtpd/store set greylist 192.0.2.1 1 --ttl 3600
  qpsmtpd-store --config /etc/qpsmtpd expire          # from cron, hourly
  qpsmtpd-store --config /etc/qpsmtpd greylist list
  qpsmtpd-store --config /etc/qpsmtpd greylist whitelist 192.0.2.1 --sender a@b.example
  qpsmtpd-store --redis 10.0.0.5:6379 greylist delete 192.0.2.1
""" % DEFAULT_DIR


def show(data):
    """Bytes as readable text, escaping what is not printable UTF-8."""
    text = data.decode("utf-8", "backslashreplace")
    return "".join(ch if ch.isprintable() or ch == "\\" else repr(ch)[1:-1] for ch in text)


def when(expires):
    if expires is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(expires))


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="qpsmtpd-store", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Inspect and edit the qpsmtpd_py shared store (LMDB): the tables "
                    "of greylisting, karma, connection_shaper and other stateful plugins.",
        epilog=EPILOG)
    add_store_options(
        parser, dir_help="the store directory",
        config_help="a qpsmtpd config directory; its store_dir file names the store "
                    "(or store_backend redis and store_redis, a Redis server)",
        redis_help="the store on this Redis server (store_redis_prefix qpsmtpd:)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sub.add_parser("list-tables", help="print each table with its number of live entries")
    p = sub.add_parser("list", help="print KEY<TAB>VALUE<TAB>EXPIRES for the live entries of TABLE")
    p.add_argument("table")
    p.add_argument("--prefix", default="", help="only keys starting with PREFIX")
    p = sub.add_parser("get", help="print the value of KEY (exit 1 if missing or expired)")
    p.add_argument("table")
    p.add_argument("key")
    p = sub.add_parser("set", help="store VALUE under KEY (replaces it)")
    p.add_argument("table")
    p.add_argument("key")
    p.add_argument("value")
    p.add_argument("--ttl", type=float, metavar="S", help="expire after S seconds")
    p = sub.add_parser("delete", help="remove KEY (exit 1 if it was not there)")
    p.add_argument("table")
    p.add_argument("key")
    p = sub.add_parser("expire", help="delete expired entries of TABLE, or of every "
                                      "table; prints how many")
    p.add_argument("table", nargs="?")
    p = sub.add_parser("greylist", help="greylisting triplets: list, whitelist or delete")
    grey = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    grey.add_parser("list", help="CLIENT[:SENDER][:RCPT] STATE SEEN DEFERRED DELIVERIES EXPIRES")
    for action, text in (("whitelist", "make a triplet white (delivered at once from now on)"),
                         ("delete", "forget a triplet (exit 1 if it was not there)")):
        q = grey.add_parser(action, help=text)
        q.add_argument("ip", help="the client IP (as the plugin's remote_ip 1 keys it)")
        q.add_argument("--sender", help="the sender, when the plugin has sender 1 ('' for <>)")
        q.add_argument("--rcpt", help="the recipient, when the plugin has recipient 1")
        q.add_argument("--subnet", action="store_true", help="the plugin groups clients (subnet 1)")
        q.add_argument("--no-ip", action="store_true", help="the plugin has remote_ip 0")
        if action == "whitelist":
            q.add_argument("--ttl", type=float, default=3110400.0, metavar="S",
                           help="white for S seconds without deliveries (default 36 days)")
    return parser.parse_args(argv)


def run(args, out):
    store = open_from_args(args)
    command = args.command
    if command == "greylist":
        return run_greylist(store, args, out)
    if getattr(store, "backend", "lmdb") == "lmdb" and command != "set" and not os.path.isdir(store.path):
        raise StoreError(f"store_dir {store.path} does not exist (nothing stored yet, "
                         "or a wrong --dir/--config)")
    if command == "list-tables":
        for name in store.tables():
            count = sum(1 for _ in store.table(name).entries())
            out.write(f"{name}\t{count}\n")
        return 0
    if command == "list":
        for key, value, expires in store.table(args.table).entries(args.prefix):
            out.write(f"{show(key)}\t{show(value)}\t{when(expires)}\n")
        return 0
    if command == "get":
        value = store.table(args.table).get(args.key)
        if value is None:
            return 1
        out.write(show(value) + "\n")
        return 0
    if command == "set":
        if args.ttl is not None and args.ttl <= 0:
            raise ValueError("--ttl must be more than 0 seconds")
        store.table(args.table).set(args.key, args.value, ttl=args.ttl)
        return 0
    if command == "delete":
        return 0 if store.table(args.table).delete(args.key) else 1
    if command == "expire":
        if args.table:
            count = store.table(args.table).expire()
        else:
            count = store.expire()
        out.write(f"{count}\n")
        return 0
    raise AssertionError(command)


def run_greylist(store, args, out):
    table = store.table(greylist.TABLE)
    if args.action == "list":
        for key, value, expires in table.entries():
            ts, _, black, white = greylist.parse_record(value)
            state = "white" if white else "grey"
            out.write(f"{greylist.show_key(show(key))}\t{state}\t{when(ts)}\t{black}\t{white}"
                      f"\t{when(expires)}\n")
        return 0
    key = greylist.triplet_key(args.ip, args.sender, args.rcpt, use_ip=not args.no_ip,
                               subnet=args.subnet)
    if args.action == "whitelist":
        now = time.time()
        table.update(key, lambda old: greylist.format_record(
            now, 1, greylist.parse_record(old)[2] if old else 0, max(1, greylist.parse_record(old)[3]
                                                                      if old else 1)),
                     ttl=args.ttl)
        out.write(f"{greylist.show_key(key)}\twhite\n")
        return 0
    return 0 if table.delete(key) else 1


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return run_tool("qpsmtpd-store", run, args, sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
