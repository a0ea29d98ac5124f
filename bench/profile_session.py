#!/usr/bin/env python3
"""Profile the SMTP engine without sockets or forks: one pipelined session of N
messages, read from a file and answered into /dev/null, under cProfile.

    .venv/bin/python bench/profile_session.py [-n 3000] [--size 0|102400] [--sort tottime]

Same plugins as bench/run.py. Prints the top functions and the engine's CPU time per
message; compare before/after a change to a hot path.
"""

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from qpsmtpd_py.app import Qpsmtpd                      # noqa: E402
from qpsmtpd_py.config import Config                      # noqa: E402
from qpsmtpd_py.server.warmup import session_from_file     # noqa: E402

PLUGINS = ["relay", "count_unrecognized_commands", "dont_require_anglebrackets", "rcpt_ok",
           "queue/discard"]


def session_bytes(count, size):
    """What smtp-source sends: HELO, then MAIL/RCPT/DATA/message per message, QUIT."""
    body = "".join(f"La de da de da {i}.\r\n" for i in range(1, 5)).encode()
    if size:
        line = b"X" * 78 + b"\r\n"
        body = line * (size // len(line))
    header = (b"From: <src@example.test>\r\nTo: <rcpt@example.test>\r\n"
              b"Date: Tue, 24 Nov 2026 03:35:21 +0000 (UTC)\r\nMessage-Id: <1@client>\r\n\r\n")
    one = (b"MAIL FROM:<src@example.test>\r\nRCPT TO:<rcpt@example.test>\r\nDATA\r\n"
           + header + body + b".\r\n")
    return b"HELO client.example.test\r\n" + one * count + b"QUIT\r\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=3000, help="messages in the session")
    parser.add_argument("--size", type=int, default=0, help="body bytes (0: smtp-source's default)")
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--top", type=int, default=35)
    parser.add_argument("--per-session", type=int, default=0,
                        help="messages per session (default: all in one session)")
    parser.add_argument("--no-profile", action="store_true", help="just time it")
    parser.add_argument("--rdns", metavar="SERVER",
                        help="reverse DNS on, dns_servers SERVER (e.g. bench/tiny_dns.py's 127.0.0.1:5399, "
                             "or 192.0.2.1 for lookups that fail)")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="qpsmtpd-prof-")
    conf = os.path.join(work, "config")
    os.makedirs(conf)
    for name, text in {"me": "bench.example.test", "rcpthosts": "example.test",
                       "loglevel": "4", "spool_dir": os.path.join(work, "spool"),
                       "plugins": "\n".join(PLUGINS),
                       **({"dns_servers": args.rdns} if args.rdns else {})}.items():
        with open(os.path.join(conf, name), "w") as fh:
            fh.write(text + "\n")
    os.environ["QPSMTPD_CONFIG"] = conf
    app = Qpsmtpd(Config([conf])).load()
    app.rdns = bool(args.rdns)
    per = args.per_session or args.n
    path = os.path.join(work, "session")
    with open(path, "wb") as fh:
        fh.write(session_bytes(per, args.size))

    def run():
        for _ in range(args.n // per):
            session_from_file(app, path, ("127.0.0.1", 40000), ("127.0.0.1", 25))

    run()                                      # warm caches (config files, imports)
    timed(run, args, f"{args.n} messages of {args.size or 'default'} bytes")


def timed(run, args, what):
    """CPU seconds of run(), under cProfile unless args.no_profile; prints the CPU
    per message (of args.n) and cProfile's top args.top functions by args.sort."""
    t0 = time.process_time()
    if args.no_profile:
        run()
    else:
        profiler = cProfile.Profile()
        profiler.runcall(run)
    cpu = time.process_time() - t0
    print(f"{what}: {cpu * 1000 / args.n:.3f} ms CPU per message"
          f"{'' if args.no_profile else ' (profiled)'}")
    if not args.no_profile:
        pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.top)
        if os.environ.get("QPB_PSTATS"):
            profiler.dump_stats(os.environ["QPB_PSTATS"])
    return cpu


if __name__ == "__main__":
    main()
