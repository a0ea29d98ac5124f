#!/usr/bin/env python3
"""Worker memory by message shape (issue 16 point 3): one qpsmtpd-prefork worker
with the mail plugins of the tests (rcpt_ok, queue/maildir), databytes unlimited,
takes one message of each shape; its peak RSS (VmHWM, reset before each message
through /proc/PID/clear_refs) is printed next to its idle RSS. Run by hand:

    .venv/bin/python bench/memory.py            # 25 MB shapes, a few seconds
    .venv/bin/python bench/memory.py 100        # 100 MB shapes

Results are in docs/reliability.md; t/test_memory.py keeps the bound in CI.
"""

import os
import sys
import tempfile
import time
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "t"))

from harness import MAIL_PLUGINS, PLUGIN_DIRS, ConfigDir  # noqa: E402
from serverproc import Server, wait_until  # noqa: E402


def status(pid, key):
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) // 1024
    return 0


def shapes(mb):
    n = mb << 20
    yield "tiny fields (X:a), 1.9 MB", b"X:a\r\n" * 400000
    yield "200,000 fields, 6 MB", b"".join(b"X-F%06d: value number %06d\r\n" % (i, i)
                                           for i in range(200000))
    yield f"header-only, {mb} MB of fields", b"".join(
        b"X-F%07d: value number %07d padding padding\r\n" % (i, i) for i in range(n // 48))
    yield f"one {mb} MB body line", b"Subject: x\r\n\r\n" + b"a" * n + b"\r\n"
    yield f"one {mb} MB header line", b"X-Long: " + b"a" * n + b"\r\n\r\nbody\r\n"
    yield f"one field folded over {mb} MB", b"Subject: x\r\n" + b" folded\r\n" * (n // 9) + b"\r\nbody\r\n"
    yield f"{mb} MB of 4-byte lines", b"Subject: x\r\n\r\n" + b"ab\r\n" * (n // 4)
    yield f"{mb} MB plain text body", b"Subject: x\r\n\r\n" + (b"x" * 76 + b"\r\n") * (n // 78)


def main():
    mb = int(sys.argv[1]) if len(sys.argv) > 1 else 25
    srv = ConfigDir(Path(tempfile.mkdtemp(prefix="qpt-memory-")), plugins=MAIL_PLUGINS,
                    files={"rcpthosts": "example.test", "plugin_dirs": PLUGIN_DIRS,
                           "loglevel": "4"})
    with Server("qpsmtpd-prefork", srv, "--children", "1", "--idle-children", "1",
                "--max-requests", "1000", "--max-requests-jitter", "0") as server:
        pid = wait_until(lambda: list(server.children()), what="the worker")[0]
        with server.client() as c:
            c.ehlo()
            c.cmd("QUIT")
        idle = status(pid, "VmRSS")
        print(f"worker {pid}: idle RSS {idle} MB")
        worst = 0
        for name, data in shapes(mb):
            with open(f"/proc/{pid}/clear_refs", "w") as fh:
                fh.write("5")
            started = time.monotonic()
            with server.client(timeout=600) as c:
                c.ehlo()
                c.cmd("MAIL FROM:<a@b.test>")
                c.cmd("RCPT TO:<u@example.test>")
                c.cmd("DATA")
                c.send(data + b".\r\n")
                code = c.read_reply()[0]
                c.cmd("QUIT")
            peak = status(pid, "VmHWM")
            worst = max(worst, peak)
            print(f"  {name:34s} {len(data) / 1048576:7.1f} MB  {code}  peak RSS {peak:4d} MB "
                  f"(+{peak - idle})  {time.monotonic() - started:5.1f}s")
        print(f"worst peak {worst} MB, {worst - idle} MB over idle")


if __name__ == "__main__":
    main()
