"""Liveness by progress (issue 9, bug 2): a child is alive while bytes flow or its
plugins call keepalive(); a stuck one has its stack logged and is killed; children
stuck while starting are replaced; --max-requests has a per-child jitter.

The watchdog's decisions are tested with an injected clock; the behaviour a user
sees is tested against real qpsmtpd-prefork and qpsmtpd-forkserver processes with
`timeoutsmtpd 1`, so the hung-child limit is 2 s.
"""

import os
import re
import signal
import time
from contextlib import contextmanager
from types import SimpleNamespace

import pytest

from serverproc import PLUGIN_DIR, Server, alive, open_session, wait_until

from qpsmtpd_py.app import Qpsmtpd
from qpsmtpd_py.channel import PipeChannel
from qpsmtpd_py.plugin import Plugin
from qpsmtpd_py.server import prefork
from qpsmtpd_py.server.liveness import GRACE, Heartbeat, Watchdog, heartbeat_interval, limit_for
from qpsmtpd_py.server.scoreboard import BUSY, IDLE, Scoreboard

TEST_PLUGINS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "plugins")
SERVERS = ["qpsmtpd-prefork", "qpsmtpd-forkserver"]


class FakeClock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


# -- the child's heartbeat -----------------------------------------------------------------
def test_heartbeat_is_written_at_most_once_per_interval():
    clock, beats = FakeClock(), []
    beat = Heartbeat(lambda: beats.append(clock.now), interval=1.0, clock=clock)
    for _ in range(10_000):           # a fast upload: thousands of reads in one instant
        beat()
    clock.now += 0.6
    beat()
    clock.now += 0.5
    beat()
    assert beats == [1000.0, 1001.1]


def test_heartbeat_interval_is_a_quarter_of_the_limit_at_most_a_second():
    assert limit_for(1) == 2 and heartbeat_interval(1) == 0.5
    assert heartbeat_interval(1200) == 1.0


def test_channel_reports_progress_on_every_read_and_write():
    calls = []
    rfd, client_w = os.pipe()
    client_r, wfd = os.pipe()
    channel = PipeChannel(rfd, wfd, timeout=5)
    channel.progress = lambda: calls.append(1)
    os.write(client_w, b"EHLO x\r\n")
    assert channel.readline(512) == b"EHLO x\r\n"
    assert len(calls) == 1
    channel.write(b"250 ok\r\n")
    channel.flush()
    assert len(calls) == 2 and os.read(client_r, 100) == b"250 ok\r\n"
    channel.flush()                   # nothing to send: no progress
    os.write(client_w, b"body")
    assert channel.read_chunk() == b"body"
    assert len(calls) == 3
    for fd in (rfd, client_w, client_r, wfd):
        os.close(fd)


def test_plugin_keepalive_reaches_the_servers_heartbeat():
    app, beats = Qpsmtpd(), []
    app.keepalive()                   # no server (qpsmtpd on stdio): nothing to do
    app.heartbeat = lambda: beats.append(1)
    Plugin(app, "slow").keepalive()
    assert beats == [1]


# -- the master's watchdog -----------------------------------------------------------------
def watched(slots=3):
    clock = FakeClock()
    board = Scoreboard(slots, clock=clock)
    dog = Watchdog(board, clock=clock)
    children = {}
    for pid in range(100, 100 + slots):
        slot = board.claim()
        board.set_pid(slot, pid)
        children[pid] = SimpleNamespace(slot=slot)
    return clock, board, dog, children


def test_watchdog_finds_busy_and_starting_children_without_progress():
    clock, board, dog, children = watched()
    board.mark(children[100].slot, BUSY, "192.0.2.7")
    board.mark(children[101].slot, IDLE)
    # 102 stays STARTING (claimed but never ready)
    clock.now += 1.9
    board.heartbeat(children[100].slot)
    clock.now += 0.2                  # 102 silent 2.1 s; 100 beat 0.2 s ago
    found = dog.stuck(children, limit=2)
    assert [(pid, state, round(silent, 1)) for pid, _, state, _, silent in found] == [(102, 1, 2.1)]
    clock.now += 1.9                  # 100 now silent 2.1 s; idle 101 never counts
    found = dog.stuck(children, limit=2)
    assert sorted((pid, ip) for pid, _, _, ip, _ in found) == [(100, "192.0.2.7"), (102, "")]


def test_watchdog_grace_period_then_kill():
    clock, board, dog, children = watched(1)
    board.mark(children[100].slot, BUSY, "192.0.2.7")
    clock.now += 5
    assert [pid for pid, *_ in dog.stuck(children, 2)] == [100]
    dog.dumping(100)
    assert dog.stuck(children, 2) == []          # not signalled twice
    assert dog.due() == [] and dog.next_due() == GRACE
    clock.now += GRACE
    assert dog.due() == [100] and dog.next_due() == 0.0
    assert dog.take_dump(100) == ""              # no dump file: nothing to log
    assert dog.due() == [] and dog.next_due() is None


def test_watchdog_reads_the_childs_dump_file():
    _, _, dog, _ = watched(1)
    fd = dog.before_fork()
    dog.forked(4242, fd)
    os.write(fd, b"Thread 0x1 (most recent call first):\n  File \"x.py\", line 3 in hook_data_post\n")
    assert dog.take_dump(4242).endswith("line 3 in hook_data_post")
    with pytest.raises(OSError):
        os.fstat(fd)                             # closed once read
    assert dog.take_dump(4242) == ""


# -- --max-requests-jitter -------------------------------------------------------------------
def test_max_requests_jitter_spreads_children():
    assert prefork.parse_args([]).max_requests_jitter == 10          # a tenth by default
    assert prefork.parse_args(["--max-requests", "2"]).max_requests_jitter == 0
    args = prefork.parse_args(["--max-requests", "50", "--max-requests-jitter", "20"])
    master = SimpleNamespace(args=args, board=None, listeners=[])
    limits = [prefork.Worker(master, slot=0).max_requests for _ in range(200)]
    assert min(limits) >= 50 and max(limits) <= 70
    assert len(set(limits)) > 5
    fixed = prefork.parse_args(["--max-requests-jitter", "0"])
    master = SimpleNamespace(args=fixed, board=None, listeners=[])
    assert {prefork.Worker(master, slot=0).max_requests for _ in range(20)} == {100}


def test_max_requests_jitter_is_in_help(capsys):
    with pytest.raises(SystemExit):
        prefork.parse_args(["--help"])
    assert "--max-requests-jitter" in capsys.readouterr().out


# -- real servers ------------------------------------------------------------------------------
def liveness_config(make_config, *plugins):
    # plugin_timeout (default: the timeout, 1 s here) would interrupt the stuck
    # plugins with a 4xx first; the watchdog is the last resort for what it cannot
    # reach (a call stuck in C), so it is set out of the way
    return make_config(plugins=[*plugins, "rcpt_ok", "queue/maildir {maildir}"],
                       files={"rcpthosts": "example.test", "loglevel": "6", "timeoutsmtpd": "1",
                              "plugin_timeout": "60", "plugin_dirs": [TEST_PLUGINS, PLUGIN_DIR]})


def server_args(program):
    return ("--children", "2", "--idle-children", "1") if program.endswith("prefork") else ()


def session_child(server):
    return wait_until(lambda: [p for p, t in server.children().items() if "127.0.0.1" in t],
                      what="the child serving the session")[0]


@contextmanager
def session_in_data(make_config, program, data, *plugins):
    """A real `program` with `plugins` and one session past DATA's 354 that has sent
    `data`: yields (srv, server, client, pid of the child serving it, time data was sent)."""
    srv = liveness_config(make_config, *plugins)
    with Server(program, srv, *server_args(program)) as server:
        c = open_session(server)
        child = session_child(server)
        c.send(data)
        yield srv, server, c, child, time.monotonic()


@pytest.mark.parametrize("program", SERVERS)
def test_slow_data_upload_is_not_taken_for_a_hang(make_config, program):
    """One DATA line every 0.5 s for 5 s with the hung limit at 2 s: accepted."""
    with session_in_data(make_config, program, "Subject: slow\r\n\r\n") as (srv, server, c, child, started):
        n = 0
        while time.monotonic() - started < 5:
            time.sleep(0.5)
            n += 1
            c.send(f"line {n}\r\n")
        c.send(".\r\n")
        assert c.read_reply()[0] == 250, c.text
        assert alive(child)
        assert c.cmd("QUIT")[0] == 221
        c.close()
        assert "hung" not in server.log and "SIGKILL" not in server.log
        (message,) = srv.messages()
        assert message.rstrip().endswith(f"line {n}".encode())


@pytest.mark.parametrize("program", SERVERS)
def test_plugin_calling_keepalive_outlives_the_limit(make_config, program):
    data = "Subject: scanned slowly\r\n\r\nbody\r\n.\r\n"
    with session_in_data(make_config, program, data, "t_slow 4 keepalive") as (srv, server, c, child, started):
        assert c.read_reply()[0] == 250, c.text
        assert time.monotonic() - started >= 4
        assert alive(child)
        assert c.cmd("QUIT")[0] == 221
        c.close()
        assert "hung" not in server.log
        assert len(srv.messages()) == 1


@pytest.mark.parametrize("program", SERVERS)
def test_stuck_plugin_is_killed_with_its_stack_in_the_log(make_config, program):
    data = "Subject: stuck\r\n\r\nbody\r\n.\r\n"
    with session_in_data(make_config, program, data, "t_slow 60") as (srv, server, c, child, started):
        assert c.closed(timeout=15)              # EOF: no reply, the connection closed
        took = time.monotonic() - started
        assert 2.0 < took < 8, took              # limit 2 s, grace 1 s, checks once a second
        wait_until(lambda: not alive(child), what="the stuck child to be gone")
        wait_until(lambda: "killed by signal SIGKILL" in server.log, what="the reaping")
        log = server.log
        silent = re.search(rf"child {child} serving 127.0.0.1 hung: no progress for ([0-9.]+)s", log)
        assert silent and 2.0 <= float(silent.group(1)) < 5, log
        assert f"child {child} stack when killed:" in log
        dump = log.split(f"child {child} stack when killed:", 1)[1]
        assert "t_slow" in dump and "in hook_data_post" in dump
        assert not srv.messages()
        print(f"{program}: stuck child closed after {took:.1f}s")
        # and the server goes on serving
        with server.client() as again:
            assert again.code == 220


def test_prefork_child_stuck_while_starting_is_replaced(make_config, tmp_path):
    marker = tmp_path / "hang-next-start"
    srv = liveness_config(make_config, f"t_stuck_start {marker}")
    with Server("qpsmtpd-prefork", srv, "--children", "3", "--idle-children", "2") as server:
        wait_until(lambda: sum(t.endswith("child: idle") for t in server.children().values()) == 2,
                   what="2 idle children")
        marker.write_text("")
        # retire one idle child (HUP replaces them all): its successor hangs in post-fork
        server.signal(signal.SIGHUP)
        stuck = wait_until(lambda: "starting hung" in server.log and server.log, 15,
                           what="the stuck starting child to be found")
        pid = int(stuck.split(" starting hung")[0].rsplit("child ", 1)[1])
        wait_until(lambda: not alive(pid), what="the stuck child to be killed")
        assert "in hook_post_fork" in server.log.split(f"child {pid} stack when killed:", 1)[1]
        wait_until(lambda: sum(t.endswith("child: idle") for t in server.children().values()) == 2,
                   what="the pool back to 2 idle children")
        with server.client() as c:
            assert c.send_message("a@b.test", ["u@example.test"], "Subject: x\n\nafter")[0] == 250
