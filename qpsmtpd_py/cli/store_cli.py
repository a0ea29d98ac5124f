"""What the store's command-line tools share (qpsmtpd-store, karma_tool,
berkeley_operation): the options that name the store, opening it, and the run
wrapper (errors as one line and exit status 2)."""

import sys

from ..config import Config, ConfigError
from ..helpers.store import Store, StoreError, make_store

WHERE_EPILOG = ("The store: --dir, --redis, else the config directory (--config, "
                "$QPSMTPD_CONFIG, ./config) with its store_backend/store_dir/store_redis.")


def add_store_options(parser, dir_help="an LMDB store directory",
                      config_help="a qpsmtpd config directory",
                      redis_help="a Redis store"):
    """--dir, --config and --redis, one of them at most."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--dir", metavar="DIR", help=dir_help)
    where.add_argument("--config", metavar="DIR", help=config_help)
    where.add_argument("--redis", metavar="HOST[:PORT][/DB]", help=redis_help)
    return where


def open_from_args(args):
    """The store the options name: --dir (LMDB), --redis, else the config's."""
    if args.dir:
        return Store(args.dir)
    if args.redis:
        from ..helpers.store_redis import RedisStore
        return RedisStore(args.redis)
    return make_store(Config([args.config] if args.config else None))


def run_tool(prog, run, *args):
    """run(*args) -> exit status; store and config errors become one line
    `prog: error` on stderr and status 2, a closed pipe (| head) is no error.
    (What group commit still owes is fsynced at exit: helpers/store.py.)"""
    try:
        return run(*args)
    except (StoreError, ConfigError, ValueError) as exc:
        sys.stderr.write(f"{prog}: {exc}\n")
        return 2
    except BrokenPipeError:
        return 0
