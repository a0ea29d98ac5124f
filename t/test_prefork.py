"""qpsmtpd-prefork with real processes, sockets and signals."""

import os
import signal
import socket
import threading
import time

import pytest

from harness import Client, free_port
from serverproc import PLUGIN_DIR, Server, alive, connect_refused, finish_message, open_session, wait_until

PREFORK = "qpsmtpd-prefork"
LOG = {"loglevel": "6"}                  # the tests read the server's log

# a plugin for fault injection: hangs in the connect hook when the client is
# 127.0.0.2, and records SIGUSR1 log reopening per process
TEST_PLUGIN = '''
import os, time
from qpsmtpd_py.constants import DECLINED
from qpsmtpd_py.plugin import Plugin

class Faults(Plugin):
    def hook_connect(self, transaction):
        if self.connection.remote_ip == "127.0.0.2":
            time.sleep(60)
        return DECLINED

    def reopen_logs(self):
        with open(os.path.join(self.args_list[0], f"reopened.{os.getpid()}"), "w"):
            pass
'''


def pool(server):
    """(idle, busy) children by process title."""
    titles = list(server.children().values())
    idle = sum(1 for t in titles if t.endswith("child: idle"))
    return idle, len(titles) - idle


def replaced(server, dead, size):
    """The pool is back to `size` children without `dead` (one /proc snapshot)."""
    kids = server.children()
    return len(kids) == size and dead not in kids


@pytest.mark.parametrize("mode", [[], ["--no-front"]], ids=["front", "no-front"])
def test_fifty_concurrent_clients_all_delivered(mail_config, mode):
    """With --no-front the children accept themselves (epoll, EPOLLEXCLUSIVE: one idle
    child woken per client); 50 clients for 20 children wait in the listen queue."""
    srv = mail_config(files=LOG)
    with Server(PREFORK, srv, "--children", "20", "--idle-children", "5", *mode) as server:
        results = []

        def deliver(n):
            c = server.client()
            try:
                results.append(c.send_message("a@b.test", ["u@example.test"], f"Subject: {n}\n\nbody {n}")[0])
                c.cmd("QUIT")
            finally:
                c.close()

        threads = [threading.Thread(target=deliver, args=(n,)) for n in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert results == [250] * 50
        assert len(os.listdir(os.path.join(srv.maildir, "new"))) == 50
        assert len(server.children()) <= 20


def test_warm_children_stay_for_the_next_burst(mail_config):
    """Children a burst made the pool fork stay for --max-idle seconds: a second burst
    a few seconds later is served by the same, warm, processes (no fork)."""
    srv = mail_config(files=LOG)
    with Server(PREFORK, srv, "--children", "6", "--idle-children", "2", "--max-idle", "30") as server:
        wait_until(lambda: pool(server) == (2, 0), what="2 idle children")
        for burst in range(2):
            clients = []
            for _ in range(4):
                clients.append(server.client())
                wait_until(lambda: pool(server)[0] >= min(2, 6 - len(clients)), 1.0,
                           what="the pool to grow")
            if burst == 0:
                warm = set(server.children())
            else:
                assert set(server.children()) == warm, "a child was forked for the second burst"
            for c in clients:
                c.cmd("QUIT")
                c.close()
            time.sleep(3)                  # the old rule retired surplus children after 3 s
            assert len(server.children()) == 6, server.children()


def test_pool_grows_within_a_second_and_shrinks_back(mail_config):
    srv = mail_config(files=LOG)
    with Server(PREFORK, srv, "--children", "6", "--idle-children", "2", "--max-idle", "1") as server:
        wait_until(lambda: pool(server) == (2, 0), what="2 idle children")
        clients, latencies = [], []
        for _ in range(4):
            started = time.monotonic()
            clients.append(server.client())            # greeting read
            latencies.append(time.monotonic() - started)
            wait_until(lambda: pool(server)[0] >= min(2, 6 - len(clients)), 1.0,
                       what="the pool to grow within a second")
        assert max(latencies) < 1.0, latencies
        assert len(server.children()) == 6
        # the master's title is refreshed at least once a second (a busy child that
        # leaves enough spares does not wake it)
        wait_until(lambda: "6 children, 4 busy, 2 idle" in server.title(), 1.5,
                   what="the master's title to show the pool")
        print(f"pool growth: greeting latencies {[round(x * 1000) for x in latencies]} ms")
        for c in clients:
            c.cmd("QUIT")
            c.close()
        wait_until(lambda: pool(server) == (2, 0), 10, what="the pool to shrink back to 2 idle")


def test_children_are_recycled_after_max_requests(mail_config):
    srv = mail_config(files=LOG)
    with Server(PREFORK, srv, "--children", "1", "--max-requests", "2") as server:
        seen = set()
        for _ in range(4):
            c = server.client()
            seen.update(pid for pid, title in server.children().items() if "127.0.0.1" in title)
            c.cmd("QUIT")
            c.close()
            time.sleep(0.05)
        assert len(seen) == 2


def test_pre_connection_runs_on_every_connection_including_the_first(mail_config):
    srv = mail_config("hosts_allow", files={**LOG, "hosts_allow": "127.0.0.1 DENY"})
    with Server(PREFORK, srv, "--children", "2") as server:
        for _ in range(3):
            c = server.client()
            assert (c.code, c.text) == (550, "Sorry, service not available to you")
            assert c.closed()
            c.close()
        srv.write("hosts_allow", "127.0.0.0/8 DENYSOFT come back later")
        time.sleep(1.1)                          # config files are rechecked every second
        with server.client() as c:
            assert (c.code, c.text) == (451, "come back later")


def test_max_from_ip_counts_across_children_and_kill_9_frees_the_slot(mail_config):
    srv = mail_config("hosts_allow", files=LOG)
    with Server(PREFORK, srv, "--children", "5", "--idle-children", "5",
                "--max-from-ip", "2") as server:
        first, second = server.client(), server.client()
        assert first.code == second.code == 220
        third = server.client()
        assert (third.code, third.text) == (451, "too many connections from 127.0.0.1, try again later")
        # kill -9 the child serving `second`: its slot must not stay counted
        second.ehlo()
        busy = [pid for pid, t in server.children().items() if "127.0.0.1 ehlo" in t]
        assert len(busy) == 1
        os.kill(busy[0], signal.SIGKILL)
        assert second.closed()
        wait_until(lambda: replaced(server, busy[0], 5),
                   what="a replacement child")
        again = server.client()
        assert again.code == 220
        for c in (first, third, again):
            c.close()


def test_max_from_ip_on_a_dual_stack_listener(mail_config):
    """IPv4 clients of an IPv6 socket arrive as ::ffff:a.b.c.d; they must still be
    counted as one IP (qpsmtpd bug #315)."""
    srv = mail_config("hosts_allow", files=LOG)
    port = free_port()
    with Server(PREFORK, srv, "--children", "3", "--max-from-ip", "1", listen=False, port=port,
                *("--listen-address", f"[::ffff:127.0.0.1]:{port}")) as server:
        with server.client() as first:
            first.ehlo()
            assert "[127.0.0.1]" in first.text
            with server.client() as second:
                assert (second.code, second.text) == (451, "too many connections from 127.0.0.1, try again later")


def test_kill_9_mid_data_delivers_nothing_and_is_replaced(mail_config):
    srv = mail_config(files=LOG)
    with Server(PREFORK, srv, "--children", "3", "--idle-children", "3") as server:
        wait_until(lambda: len(server.children()) == 3, what="3 children")
        before = set(server.children())
        c = open_session(server)
        c.send("Subject: half\r\n\r\nfirst half of the body\r\n")
        victim = wait_until(lambda: [p for p, t in server.children().items() if "127.0.0.1 data" in t],
                            what="the child in DATA")[0]
        os.kill(victim, signal.SIGKILL)
        with pytest.raises((EOFError, ConnectionError)):
            finish_message(c)
        c.close()
        assert not os.listdir(os.path.join(srv.maildir, "new"))
        wait_until(lambda: replaced(server, victim, 3),
                   what="a replacement child")
        assert set(server.children()) - before
        # and the pool still delivers
        with server.client() as c:
            assert c.send_message("a@b.test", ["u@example.test"], "Subject: after\n\nok")[0] == 250
        assert "killed by signal SIGKILL" in server.log


def test_hup_with_twenty_open_sessions_loses_none(mail_config):
    srv = mail_config(files={**LOG, "smtpgreeting": "old greeting"})
    with Server(PREFORK, srv, "--children", "30", "--idle-children", "3") as server:
        sessions = [open_session(server) for _ in range(20)]
        assert {s.greeting for s in sessions} == {"old greeting ESMTP"}
        old_children = set(server.children())
        srv.write("smtpgreeting", "new greeting")
        server.signal(signal.SIGHUP)
        wait_until(lambda: "reload done" in server.log, what="the reload")
        fresh = server.client()
        assert fresh.text.startswith("new greeting"), fresh.text
        for s in sessions:
            assert finish_message(s)[0] == 250
            assert s.cmd("QUIT")[0] == 221
            s.close()
        assert len(os.listdir(os.path.join(srv.maildir, "new"))) == 20
        # every child of the old generation exits once its session is over
        wait_until(lambda: not (old_children & set(server.children())), what="old children to exit")
        fresh.close()


def test_broken_config_on_hup_keeps_serving_the_old_one(mail_config):
    srv = mail_config(files=LOG)
    with Server(PREFORK, srv, "--children", "2") as server:
        srv.set_plugins(["no_such_plugin", "rcpt_ok"])
        server.signal(signal.SIGHUP)
        wait_until(lambda: "reload failed" in server.log, what="the failed reload")
        assert "config/plugins:1" in server.log
        with server.client() as c:
            assert c.send_message("a@b.test", ["u@example.test"], "Subject: x\n\nstill here")[0] == 250


def test_term_lets_twenty_sessions_finish(mail_config):
    srv = mail_config(files=LOG)
    pid_file = os.path.join(srv.tmp, "prefork.pid")
    with Server(PREFORK, srv, "--children", "25", "--idle-children", "2",
                "--pid-file", pid_file) as server:
        sessions = [open_session(server) for _ in range(20)]
        server.signal(signal.SIGTERM)
        wait_until(lambda: connect_refused(server.port), 5, what="the listener to close")
        for s in sessions:
            assert finish_message(s)[0] == 250
            assert s.cmd("QUIT")[0] == 221
            s.close()
        assert server.wait_exit(10) == 0
        assert len(os.listdir(os.path.join(srv.maildir, "new"))) == 20
        assert not os.path.exists(pid_file)


def test_graceful_timeout_then_kill(mail_config):
    srv = mail_config(files=LOG)
    with Server(PREFORK, srv, "--children", "2", "--graceful-timeout", "0.5") as server:
        c = server.client()
        started = time.monotonic()
        server.signal(signal.SIGTERM)
        assert server.wait_exit(10) == 0
        assert time.monotonic() - started < 5
        assert c.closed()
        assert "graceful stop timed out" in server.log


def test_hung_child_is_killed_and_usr1_reaches_children(mail_config, tmp_path):
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    (plugin_dir / "faults.py").write_text(TEST_PLUGIN)
    marks = tmp_path / "marks"
    marks.mkdir()
    # plugin_timeout 60: the hang must reach the watchdog, not be interrupted at 1 s
    srv = mail_config(f"faults {marks}", files={**LOG, "timeoutsmtpd": "1", "plugin_timeout": "60",
                                                "plugin_dirs": [str(plugin_dir), PLUGIN_DIR]})
    with Server(PREFORK, srv, "--children", "3", "--idle-children", "2") as server:
        wait_until(lambda: pool(server) == (2, 0), what="2 idle children")
        server.signal(signal.SIGUSR1)
        expected = {server.pid, *server.children()}
        wait_until(lambda: {int(n.split(".")[1]) for n in os.listdir(marks)} >= expected,
                   what="every process to reopen its logs")
        # a client from 127.0.0.2 makes its child hang in a plugin: killed after 2 x timeout
        sock = socket.create_connection(("127.0.0.1", server.port), source_address=("127.0.0.2", 0))
        hung = Client(sock, timeout=10)
        victim = wait_until(lambda: [p for p, t in server.children().items() if "127.0.0.2" in t],
                            what="the hung child")[0]
        started = time.monotonic()
        assert hung.closed(timeout=10)
        assert 1.0 < time.monotonic() - started < 6          # 2 x timeoutsmtpd 1
        wait_until(lambda: not alive(victim), what="the hung child to be gone")
        assert f"child {victim} serving 127.0.0.2 hung" in server.log


def test_children_leave_when_the_master_is_killed(mail_config):
    srv = mail_config(files=LOG)
    with Server(PREFORK, srv, "--children", "3") as server:
        kids = wait_until(lambda: len(server.children()) == 3 and list(server.children()),
                          what="3 children")
        busy = server.client()
        server.proc.kill()
        server.proc.wait()
        # idle orphans stop serving within a second or two; the busy one finishes first
        wait_until(lambda: sum(alive(pid) for pid in kids) == 1, 5, what="idle orphans to exit")
        assert busy.send_message("a@b.test", ["u@example.test"], "Subject: x\n\norphan")[0] == 250
        busy.cmd("QUIT")
        wait_until(lambda: not any(alive(pid) for pid in kids), 5, what="the last orphan to exit")
