#!/usr/bin/env python3
"""CPU of a freshly forked child's first session (what a growing pool and the
forkserver pay per new child), with and without warming the engine up in the
parent first (qpsmtpd_py/server/warmup.py). No sockets: the session is read from
a file, as in bench/profile_session.py.

    .venv/bin/python bench/first_session.py [-n 200]
"""

import argparse
import gc
import os
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.profile_session import PLUGINS, session_bytes      # noqa: E402
from qpsmtpd_py.app import Qpsmtpd                          # noqa: E402
from qpsmtpd_py.config import Config                          # noqa: E402
from qpsmtpd_py.server import warmup                          # noqa: E402

FAULTS = []


def one_session(app, path):
    warmup.session_from_file(app, path, client=("127.0.0.1", 40000))


def children(app, path, n):
    """Median CPU ms of a forked child's first session (FAULTS: its page faults)."""
    out = []
    del FAULTS[:]
    for _ in range(n):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            t0, f0 = time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            one_session(app, path)
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
            os.write(w, f"{time.process_time() - t0} {faults}".encode())
            os._exit(0)
        os.close(w)
        cpu, faults = os.read(r, 64).split()
        out.append(float(cpu) * 1000)
        FAULTS.append(int(faults))
        os.close(r)
        os.waitpid(pid, 0)
    return statistics.median(out)


def main():
    import tempfile
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=200)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="qpsmtpd-first-")
    conf = os.path.join(work, "config")
    os.makedirs(conf)
    for name, text in {"me": "bench.example.test", "rcpthosts": "example.test", "loglevel": "4",
                       "spool_dir": os.path.join(work, "spool"), "plugins": "\n".join(PLUGINS)}.items():
        with open(os.path.join(conf, name), "w") as fh:
            fh.write(text + "\n")
    app = Qpsmtpd(Config([conf])).load()
    app.rdns = False
    path = os.path.join(work, "session")
    with open(path, "wb") as fh:
        fh.write(session_bytes(1, 0))
    gc.freeze()
    print(f"cold parent: first session in a child {children(app, path, args.n):.3f} ms CPU, {statistics.median(FAULTS)} page faults")
    warmup.warm_up()
    gc.freeze()
    print(f"engine warmed up in the parent: {children(app, path, args.n):.3f} ms CPU, {statistics.median(FAULTS)} page faults")
    one_session(app, path)
    gc.freeze()
    print(f"parent ran the real chain once: {children(app, path, args.n):.3f} ms CPU, "
          f"{statistics.median(FAULTS)} page faults")
    for _ in range(20):
        one_session(app, path)
    t0 = time.process_time()
    for _ in range(args.n):
        one_session(app, path)
    print(f"warm process, later sessions: {(time.process_time() - t0) * 1000 / args.n:.3f} ms CPU")


if __name__ == "__main__":
    main()
