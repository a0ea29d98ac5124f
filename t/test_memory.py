"""Worker memory is bounded whatever the message's shape (issue 16 point 3): the
header block ends at 1 MiB or 10,000 fields (data_reader.py) and everything else
streams to the spool, so a worker's peak RSS stays within MEMORY_BOUND_MB of its
idle size. Measured by hand for 25 and 100 MB messages in docs/reliability.md
(bench/memory.py)."""

import os

import pytest

from serverproc import Server, wait_until

MEMORY_BOUND_MB = 30          # over the idle worker; measured: at most 15

SHAPES = {
    "tiny fields": b"X:a\r\n" * 400000,                       # 262,144 fields in 1 MiB
    "200k fields": b"".join(b"X-F%06d: value number %06d\r\n" % (i, i) for i in range(200000)),
    "one long line": b"Subject: x\r\n\r\n" + b"a" * (8 << 20) + b"\r\n",
    "folded field": b"Subject: x\r\n" + b" folded\r\n" * 400000 + b"\r\nbody\r\n",
    "short lines": b"Subject: x\r\n\r\n" + b"ab\r\n" * (2 << 20),
}


def status(pid, key):
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) // 1024
    raise AssertionError(f"no {key} for {pid}")


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    from harness import MAIL_PLUGINS, PLUGIN_DIRS, ConfigDir
    srv = ConfigDir(tmp_path_factory.mktemp("memory"), plugins=MAIL_PLUGINS,
                    files={"rcpthosts": "example.test", "plugin_dirs": PLUGIN_DIRS})
    with Server("qpsmtpd-prefork", srv, "--children", "1", "--idle-children", "1",
                "--max-requests", "1000", "--max-requests-jitter", "0") as server:
        pid = wait_until(lambda: list(server.children()), what="the worker")[0]
        with server.client() as c:                   # warm: one session done
            c.ehlo()
            c.cmd("QUIT")
        yield server, pid, status(pid, "VmRSS")


@pytest.mark.parametrize("shape", SHAPES)
def test_worker_memory_is_bounded_whatever_the_shape(worker, shape):
    server, pid, idle = worker
    with open(f"/proc/{pid}/clear_refs", "w") as fh:   # restart the peak (VmHWM)
        fh.write("5")
    with server.client(timeout=120) as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@b.test>")[0] == 250
        assert c.cmd("RCPT TO:<u@example.test>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(SHAPES[shape] + b".\r\n")
        assert c.read_reply()[0] == 250
        c.cmd("QUIT")
    assert list(server.children()) == [pid]
    peak = status(pid, "VmHWM")
    print(f"{shape}: idle {idle} MB, peak {peak} MB")
    assert peak - idle < MEMORY_BOUND_MB, (shape, idle, peak)
