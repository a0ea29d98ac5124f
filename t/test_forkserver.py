"""qpsmtpd-forkserver with real processes, sockets and signals."""

import os
import signal
import socket
import threading
import time

import pytest

from harness import free_port
from serverproc import Server, connect_refused, finish_message, open_session, wait_until

FORKSERVER = "qpsmtpd-forkserver"
LOG = {"loglevel": "6"}                  # the tests read the server's log


def has_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_concurrent_clients_one_child_each(mail_config):
    srv = mail_config(files=LOG)
    with Server(FORKSERVER, srv, "--limit-connections", "20", "--max-idle", "1") as server:
        results = []

        def deliver(n):
            with server.client() as c:
                results.append(c.send_message("a@b.test", ["u@example.test"], f"Subject: {n}\n\n{n}")[0])
                c.cmd("QUIT")

        threads = [threading.Thread(target=deliver, args=(n,)) for n in range(30)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert results == [250] * 30
        assert len(srv.messages()) == 30
        wait_until(lambda: not server.children(), what="every child to exit")


def test_child_title_shows_client_and_phase(mail_config):
    srv = mail_config(files=LOG)
    with Server(FORKSERVER, srv) as server:
        with server.client() as c:
            c.ehlo()
            c.cmd("MAIL FROM:<a@b.test>")
            wait_until(lambda: "qpsmtpd-forkserver child: 127.0.0.1 mail" in server.children().values(),
                       what="the child's title")
            assert "qpsmtpd-forkserver master: 1 of 15 connections" == server.title()


def test_max_from_ip_via_hosts_allow(mail_config):
    srv = mail_config("hosts_allow", files=LOG)
    with Server(FORKSERVER, srv, "--max-from-ip", "1") as server:
        first = server.client()
        assert first.code == 220
        with server.client() as second:
            assert (second.code, second.text) == (451, "too many connections from 127.0.0.1, try again later")
            assert second.closed()
        first.cmd("QUIT")
        first.close()
        wait_until(lambda: server.title().endswith(" 0 of 15 connections"), what="the first child to exit")
        with server.client() as third:
            assert third.code == 220


def test_pre_connection_deny_text(mail_config):
    srv = mail_config("hosts_allow", files={**LOG, "hosts_allow": "127.0.0.1/32 DENY"})
    with Server(FORKSERVER, srv) as server:
        with server.client() as c:
            assert (c.code, c.text) == (550, "Sorry, service not available for you")
            assert c.closed()


def test_limit_connections_makes_clients_wait(mail_config):
    srv = mail_config(files=LOG)
    with Server(FORKSERVER, srv, "--limit-connections", "2") as server:
        held = [server.client(), server.client()]
        waiting = server.client(read_greeting=False, timeout=5)
        assert not waiting.closed(timeout=0.5) and not waiting.buf     # in the backlog
        held[0].cmd("QUIT")
        waiting.read_reply()
        assert waiting.code == 220
        for c in (*held, waiting):
            c.close()


def test_ipv6_listener_and_repeated_ports(mail_config):
    if not has_ipv6_loopback():
        pytest.skip("no IPv6 loopback")
    srv = mail_config(files=LOG)
    port2 = free_port()
    with Server(FORKSERVER, srv, "--listen-address", "[::1]", "--port", str(port2),
                "--listen-address", "127.0.0.1") as server:
        with server.client(host="::1", port=port2) as c:
            assert c.code == 220
            c.ehlo()
            assert "[::1]" in c.text
        with server.client(port=port2) as c:
            assert c.code == 220


def test_smtps_port_is_implicit_tls(mail_config):
    srv = mail_config(files=LOG)
    smtps = free_port()
    with Server(FORKSERVER, srv, "--smtps-port", str(smtps)) as server:
        with server.client() as plain:
            assert plain.code == 220
        # no tls plugin loaded: the SMTPS listener refuses to talk in clear text
        with server.client(port=smtps, read_greeting=False) as c:
            assert c.closed() and not c.buf
        wait_until(lambda: "SMTPS listener but no tls plugin" in server.log, what="the log line")


def test_hup_reloads_for_new_connections_only(mail_config):
    srv = mail_config(files={**LOG, "smtpgreeting": "first"})
    with Server(FORKSERVER, srv) as server:
        running = open_session(server)
        srv.write("smtpgreeting", "second")
        srv.set_plugins(["hosts_allow", "rcpt_ok", "queue/maildir {maildir}"])
        srv.write("hosts_allow", "127.0.0.1 DENYSOFT reloaded")
        server.signal(signal.SIGHUP)
        wait_until(lambda: "reload done" in server.log, what="the reload")
        with server.client() as c:
            assert (c.code, c.text) == (451, "reloaded")
        assert finish_message(running)[0] == 250
        running.close()


def test_term_waits_for_sessions_then_exits(mail_config):
    srv = mail_config(files=LOG)
    pid_file = os.path.join(srv.tmp, "fork.pid")
    with Server(FORKSERVER, srv, "--pid-file", pid_file) as server:
        assert open(pid_file).read().strip() == str(server.pid)
        sessions = [open_session(server) for _ in range(5)]
        server.signal(signal.SIGTERM)
        wait_until(lambda: connect_refused(server.port), 5, what="the listener to close")
        time.sleep(0.2)
        for s in sessions:
            assert finish_message(s)[0] == 250
            s.close()
        assert server.wait_exit(10) == 0
        assert len(srv.messages()) == 5
        assert not os.path.exists(pid_file)


def test_root_without_user_falls_back_or_refuses(mail_config):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    srv = mail_config(files=LOG)
    server = Server(FORKSERVER, srv, allow_root=False, wait=False)
    try:
        code = server.wait_exit(15)
    except Exception:
        server.stop()
        raise
    server.stop()
    assert code == 64
    assert "refusing to run as root" in server.log


def test_client_sees_reply_even_for_idle_wait(mail_config):
    """A client that connects while the master is idle is served at once."""
    srv = mail_config(files=LOG)
    with Server(FORKSERVER, srv) as server:
        time.sleep(1.2)                   # the master's loop has gone round once
        started = time.monotonic()
        with server.client() as c:
            assert c.code == 220
        assert time.monotonic() - started < 0.5

