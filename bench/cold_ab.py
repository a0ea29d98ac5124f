#!/usr/bin/env python3
"""In-process A/B of bench/shared_state.py's variants with cold caches: before each
SMTP command (and each connection) a buffer of --evict-mb MB is written through, as
the other 59 processes of a busy pre-forked server do between two commands of one
child. The CPU of the eviction is left out. In a plain loop the stateful plugins cost
a third of what they cost in the server; with the caches evicted the ratio is the
server's (2026-12-05: lmdb +13 % CPU here, +14 % in the server), so a change to the
engine or a plugin can be judged in a minute instead of a ten-minute server run.

    bench/.venv-debian/bin/python bench/cold_ab.py off,off#2,dispatch-only,lmdb
    bench/.venv-debian/bin/python bench/cold_ab.py off,lmdb --chains    # and per hook chain

The variants' apps are loaded in one process and take turns in batches (the order
reversed every other batch), so drift of the machine hits them alike; NAME#2 is a
second app of a variant (the noise between two identical ones). Reports the median
CPU microseconds per message over the batches and the difference to the first one.
"""

import argparse
import collections
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
import shared_state as SS  # noqa: E402
from profile_session import session_bytes  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", help="comma-separated shared_state.py variants (NAME#2: a twin)")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--sessions", type=int, default=100, help="sessions per batch")
    parser.add_argument("--per-session", type=int, default=1, help="messages per session")
    parser.add_argument("--evict-mb", type=int, default=8,
                        help="MB written through before each command (0: warm, as a plain loop)")
    parser.add_argument("--chains", action="store_true",
                        help="also the microseconds per message of each hook chain (wall clock, "
                             "pre-connection as PRE): which hooks a variant's cost is in")
    args = parser.parse_args()

    from qpsmtpd_py.channel import PipeChannel

    names = args.variants.split(",")
    work = tempfile.mkdtemp(prefix="qpsmtpd-cold-ab-")
    session = os.path.join(work, "session")
    with open(session, "wb") as fh:
        fh.write(session_bytes(args.per_session, 0))
    apps = {name: SS.load_variant(work, name) for name in names}

    junk = bytearray(args.evict_mb << 20)
    stride = b"\1" * (len(junk) // 64)
    evicting = [0.0]

    def evict():
        if junk:
            start = time.process_time()
            junk[::64] = stride                   # one write per cache line
            evicting[0] += time.process_time() - start

    readline = PipeChannel.readline

    def cold_readline(self, *a, **kw):
        evict()
        return readline(self, *a, **kw)
    PipeChannel.readline = cold_readline

    chains = time_chains() if args.chains else None

    def run(app, sessions):
        SS.run_sessions(app, session, sessions, before=evict)

    try:
        for name in names:                        # imports, specialisation, store handles
            run(apps[name], 50)
        cpu = {name: [] for name in names}
        for batch in range(args.batches):
            for name in (names if batch % 2 == 0 else names[::-1]):
                evicting[0] = 0.0
                if chains is not None:
                    chains.batch(name)
                start = time.process_time()
                run(apps[name], args.sessions)
                spent = time.process_time() - start - evicting[0]
                cpu[name].append(spent / args.sessions / args.per_session * 1e6)
                if chains is not None:
                    chains.done(args.sessions * args.per_session)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = statistics.median(cpu[names[0]])
    print(f"# {args.batches} batches of {args.sessions} sessions, {args.per_session} message(s) "
          f"each, {args.evict_mb} MB evicted before each command")
    for name in names:
        median = statistics.median(cpu[name])
        print(f"{name:18} {median:8.1f} us/msg  ({median - base:+7.1f}, {100 * (median - base) / base:+5.1f} %)"
              f"  range {min(cpu[name]):.0f}-{max(cpu[name]):.0f}")
    if chains is not None:
        chains.report(names)


class ChainTimes:
    """--chains: wall-clock ns of each hook chain (SMTPSession.run_hooks, and the
    pre-connection chain as PRE), per message, median over the batches."""

    def __init__(self):
        self.current = collections.Counter()
        self.name = None
        self.per = {}                             # variant -> chain -> [us per message]

    def add(self, chain, ns):
        self.current[chain] += ns

    def batch(self, name):
        self.name, self.current = name, collections.Counter()

    def done(self, messages):
        per = self.per.setdefault(self.name, collections.defaultdict(list))
        for chain, ns in self.current.items():
            per[chain].append(ns / messages / 1000)

    def report(self, names):
        def median(name, chain):
            values = self.per.get(name, {}).get(chain)
            return statistics.median(values) if values else 0.0
        found = {chain for name in names for chain in self.per.get(name, {})}
        print(f"\n{'us/msg per chain':22}" + "".join(f"{name[:13]:>14}" for name in names))
        for chain in sorted(found, key=lambda c: -median(names[-1], c)):
            print(f"{chain:22}" + "".join(f"{median(name, chain):14.1f}" for name in names))


def time_chains():
    """Wrap the session's and the pre-connection's chain runners with timers."""
    from qpsmtpd_py import session as session_module
    from qpsmtpd_py.server import connect
    times = ChainTimes()
    run_hooks, run_pre_connection = session_module.SMTPSession.run_hooks, connect.run_pre_connection

    def timed_run_hooks(self, hook, *args):
        start = time.perf_counter_ns()
        try:
            return run_hooks(self, hook, *args)
        finally:
            times.add(hook, time.perf_counter_ns() - start)

    def timed_pre_connection(*args):
        start = time.perf_counter_ns()
        try:
            return run_pre_connection(*args)
        finally:
            times.add("PRE", time.perf_counter_ns() - start)
    session_module.SMTPSession.run_hooks = timed_run_hooks
    connect.run_pre_connection = timed_pre_connection
    return times


if __name__ == "__main__":
    main()
