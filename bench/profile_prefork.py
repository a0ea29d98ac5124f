#!/usr/bin/env python3
"""Profile real prefork children: runs qpsmtpd-prefork (same options) with every
child under cProfile; each child writes its stats to $QPB_PROFILE_DIR when it exits
(SIGTERM the master, or --max-requests). Then:

    .venv/bin/python bench/profile_prefork.py --report DIR [--sort tottime]

merges them. Drive it with smtp-source like bench/run.py does.
"""

import cProfile
import os
import pstats
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def report(directory, sort="tottime", top=45):
    files = [os.path.join(directory, f) for f in os.listdir(directory) if f.endswith(".prof")]
    stats = pstats.Stats(files[0])
    for path in files[1:]:
        stats.add(path)
    print(f"{len(files)} children")
    stats.sort_stats(sort).print_stats(top)


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--report":
        sort = sys.argv[sys.argv.index("--sort") + 1] if "--sort" in sys.argv else "tottime"
        return report(sys.argv[2], sort)
    from qpsmtpd_py.server import master, prefork
    out = os.environ.get("QPB_PROFILE_DIR", "/tmp/qpsmtpd-prefork-profile")
    os.makedirs(out, exist_ok=True)
    os.chmod(out, 0o777)
    original_run, original_exit = prefork.Worker.run, master.Master.child_exit
    profiler = cProfile.Profile(time.process_time)   # CPU, not time spent waiting

    def run(self):
        profiler.enable()
        original_run(self)

    def child_exit(self, code=0):
        profiler.disable()
        try:
            profiler.dump_stats(os.path.join(out, f"child-{os.getpid()}.prof"))
        finally:
            original_exit(self, code)

    prefork.Worker.run = run
    master.Master.child_exit = child_exit
    return prefork.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
