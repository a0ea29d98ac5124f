"""`qpsmtpd-store`: look at and edit the shared LMDB store from the shell
(greylisting entries, karma, counters), safely while the server runs."""

import argparse
import os
import sys
import time

from .config import Config, ConfigError
from .store import DEFAULT_DIR, Store, StoreError, store_settings

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
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--dir", metavar="DIR", help="the store directory")
    where.add_argument("--config", metavar="DIR",
                       help="a qpsmtpd config directory; its store_dir file names the store")
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
    return parser.parse_args(argv)


def open_from_args(args):
    if args.dir:
        return Store(args.dir)
    dirs = None
    if args.config:
        dirs = [args.config]
    config = Config(dirs)

    class App:
        pass
    app = App()
    app.config = config
    path, map_size, max_size, sync = store_settings(app)
    return Store(path, map_size, max_size, sync)


def run(args, out):
    store = open_from_args(args)
    command = args.command
    if command != "set" and not os.path.isdir(store.path):
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


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return run(args, sys.stdout)
    except (StoreError, ConfigError, ValueError) as exc:
        sys.stderr.write(f"qpsmtpd-store: {exc}\n")
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
