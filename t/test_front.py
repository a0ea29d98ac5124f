"""The prefork front (issue 16 point 1): a client that has not sent a complete
command costs a file descriptor in the master, not a worker. Under stress, or
past --max-from-ip, the master greets new clients itself and hands them to a
worker only once they have sent a command; the worker's pre-connection and
connect hooks still judge them (a refusal answers that first command)."""

import signal
import socket
import time

import pytest

from harness import Client, PLUGIN_DIRS
from serverproc import Server, wait_until

PREFORK = "qpsmtpd-prefork"
FILES = {"loglevel": "6", "stress_timeout": "2"}


def connect_from(server, ip, read_greeting=True, timeout=20):
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout,
                                    source_address=(ip, 0))
    client = Client(sock, timeout=timeout)
    if read_greeting:
        client.read_reply()
    return client


def silent(server, ips):
    """Connections that never say anything (their greeting left unread)."""
    return [socket.create_connection(("127.0.0.1", server.port), source_address=(ip, 0))
            for ip in ips]


def greeted_within(server, ip, seconds):
    started = time.monotonic()
    client = connect_from(server, ip)
    took = time.monotonic() - started
    assert client.code == 220, client.text
    assert took < seconds, took
    return client, took


def test_full_pool_of_silent_clients_an_honest_one_is_greeted_and_delivers(mail_config):
    srv = mail_config(files=FILES)
    with Server(PREFORK, srv, "--children", "2", "--idle-children", "2") as server:
        wait_until(lambda: len(server.children()) == 2, what="2 children")
        hogs = silent(server, ["127.0.0.2", "127.0.0.3"])
        wait_until(lambda: sum("127.0.0." in t for t in server.children().values()) == 2,
                   what="both children taken")
        more = silent(server, [f"127.0.0.{n}" for n in range(4, 24)])
        honest, _ = greeted_within(server, "127.0.0.99", 1.0)     # by the front
        started = time.monotonic()
        assert honest.send_message("a@b.test", ["u@example.test"], "Subject: ok\n\nhonest")[0] == 250
        assert time.monotonic() - started < 8                    # stress_timeout 2 freed a child
        honest.close()
        for sock in hogs + more:
            sock.close()
        assert "stress: 2 of 2 children busy" in server.log
        assert len(srv.messages()) == 1


def test_past_max_from_ip_the_front_holds_the_client_until_a_worker_is_free(mail_config):
    srv = mail_config(files=FILES)
    with Server(PREFORK, srv, "--children", "4", "--idle-children", "4",
                "--max-from-ip", "1") as server:
        first = connect_from(server, "127.0.0.2")
        first.ehlo()
        second, _ = greeted_within(server, "127.0.0.2", 1.0)    # greeted by the front
        second.send("EHLO second.test\r\n")
        second.sock.settimeout(0.5)
        with pytest.raises(socket.timeout):                     # no worker for it yet
            second.read_reply()
        second.sock.settimeout(10)
        assert first.cmd("QUIT")[0] == 221
        assert second.read_reply()[0] == 250                     # now it has one
        assert second.send_message("a@b.test", ["u@example.test"], "Subject: x\n\nsecond",
                                   ehlo=False)[0] == 250
        for c in (first, second):
            c.close()


def test_a_client_waiting_in_the_front_gets_a_child_as_soon_as_one_is_free(mail_config):
    """The pool is full; a client the front greeted has sent EHLO. The child that
    finishes a session wakes the master, which hands it the waiting client at once
    (before: at the master's next timer, up to a second later)."""
    srv = mail_config(files=FILES)
    with Server(PREFORK, srv, "--children", "2", "--idle-children", "2") as server:
        wait_until(lambda: len(server.children()) == 2, what="2 children")
        waits = []
        busy = [connect_from(server, "127.0.0.2"), connect_from(server, "127.0.0.3")]
        for client in busy:
            client.ehlo()
        for n in range(3):
            waiting, _ = greeted_within(server, f"127.0.0.{10 + n}", 2.0)   # by the front
            waiting.send("EHLO waiting.test\r\n")
            time.sleep(0.1)                                         # READY in the front
            done = busy.pop(0)
            assert done.cmd("QUIT")[0] == 221
            freed = time.monotonic()
            waiting.sock.settimeout(5)
            assert waiting.read_reply()[0] == 250
            waits.append(time.monotonic() - freed)
            done.close()
            busy.append(waiting)
        for client in busy:
            client.close()
        assert max(waits) < 0.25, waits
        print(f"a free child took the waiting client after {[round(w * 1000) for w in waits]} ms")


def test_a_refusal_of_a_client_the_front_greeted_answers_its_first_command(mail_config):
    srv = mail_config("hosts_allow", files={**FILES, "hosts_allow": "127.0.0.5 DENY go away"})
    with Server(PREFORK, srv, "--children", "2", "--idle-children", "2") as server:
        wait_until(lambda: len(server.children()) == 2, what="2 children")
        direct = connect_from(server, "127.0.0.5", read_greeting=False)
        assert direct.read_reply() == (550, ["go away"])          # calm: as always
        keep = [connect_from(server, ip) for ip in ("127.0.0.6", "127.0.0.7")]   # pool full
        refused, _ = greeted_within(server, "127.0.0.5", 1.0)       # by the front
        refused.send("EHLO client.test\r\n")
        assert keep[0].cmd("QUIT")[0] == 221                       # a worker for it
        assert refused.read_reply() == (550, ["go away"])
        assert refused.closed()
        for c in (direct, refused, *keep):
            c.close()


def test_earlytalker_sees_what_the_client_did_before_the_fronts_greeting(mail_config):
    srv = mail_config("earlytalker wait 1", files={**FILES, "stress_timeout": "4"})
    with Server(PREFORK, srv, "--children", "2", "--idle-children", "2") as server:
        wait_until(lambda: len(server.children()) == 2, what="2 children")
        hogs = silent(server, ["127.0.0.2", "127.0.0.3"])
        wait_until(lambda: sum("127.0.0." in t for t in server.children().values()) == 2,
                   what="both children taken")
        eager = connect_from(server, "127.0.0.7", read_greeting=False)
        eager.send("EHLO eager.test\r\n")                        # before any greeting
        patient = connect_from(server, "127.0.0.8", read_greeting=False)
        started = time.monotonic()
        assert eager.read_reply()[0] == 220
        assert time.monotonic() - started >= 0.9                 # the front waited it out
        assert patient.read_reply()[0] == 220
        patient.send("EHLO patient.test\r\n")                    # after the greeting
        assert eager.read_reply() == (550, ["Connecting host started transmitting before SMTP greeting"])
        assert patient.read_reply()[0] == 250
        for c in (eager, patient, *hogs):
            c.close()


def test_under_stress_the_front_drops_a_dripper(mail_config):
    srv = mail_config(files={**FILES, "stress_timeout": "20"})
    with Server(PREFORK, srv, "--children", "1", "--idle-children", "1") as server:
        hog = connect_from(server, "127.0.0.2")
        hog.ehlo()
        dripper = connect_from(server, "127.0.0.3")              # greeted by the front
        started = time.monotonic()
        try:
            for byte in b"NOOP\r\n":
                dripper.send(bytes([byte]))
                time.sleep(1)
        except OSError:
            pass
        assert dripper.closed(timeout=5)
        assert time.monotonic() - started < 5.5                  # 3 s after its first byte
        assert "front: 127.0.0.3 sent no command in time (too slow, stress)" in server.log
        for c in (hog, dripper):
            c.close()


def test_workers_hold_no_copy_of_the_clients_waiting_in_the_front(mail_config):
    """A client the front closes sees EOF at once: no worker kept its socket."""
    srv = mail_config(files={**FILES, "stress_timeout": "2"})
    with Server(PREFORK, srv, "--children", "1", "--idle-children", "1") as server:
        hog = connect_from(server, "127.0.0.2")
        waiting = connect_from(server, "127.0.0.3")
        server.signal(signal.SIGHUP)                             # new workers fork meanwhile
        wait_until(lambda: "reload done" in server.log, what="the reload")
        assert waiting.closed(timeout=6)                         # 421 after stress_timeout
        assert waiting.buf.startswith(b"421 4.4.2 ")
        hog.close()


def master_cpu(server):
    """The master's CPU time in seconds (the scheduler's count, to the nanosecond)."""
    with open(f"/proc/{server.proc.pid}/schedstat") as fh:
        return int(fh.read().split()[0]) / 1e9


def test_while_the_pool_is_calm_children_take_new_clients_without_the_master(mail_config):
    """Calm pool: the children accept new clients themselves (the master sleeps through
    them). The child that takes the last child outside the reserve hands new clients
    to the front, which greets the next one itself and keeps the reserve; a calm
    second after the last one left (and stress ended), the children accept again."""
    srv = mail_config(files=FILES)
    with Server(PREFORK, srv, "--children", "5", "--idle-children", "5") as server:
        wait_until(lambda: len(server.children()) == 5, what="5 children")

        def master_sleeps_through_clients():
            """Ten clients cost the master no CPU (under 50 us each: through the front
            each costs it 0.1-0.4 ms)."""
            before = master_cpu(server)
            for n in range(10):                              # (each IP under --max-from-ip)
                client = connect_from(server, f"127.0.1.{n}")
                assert client.cmd("QUIT")[0] == 221
                client.close()
            return (master_cpu(server) - before) / 10 < 0.00005

        wait_until(master_sleeps_through_clients, 8, what="the children to accept themselves")
        # the reserve line of 5 children is 4: four silent clients take four children
        hogs = silent(server, [f"127.0.0.{n}" for n in range(3, 7)])
        wait_until(lambda: sum("127.0.0." in t for t in server.children().values()) == 4,
                   what="four children taken")
        held, took = greeted_within(server, "127.0.0.20", 2.0)
        assert took >= 0.2                                   # by the front, after its grace
        assert not any("127.0.0.20" in t for t in server.children().values())
        assert held.cmd("EHLO held.test")[0] == 250          # the reserve child takes it now
        held.close()
        for sock in hogs:
            sock.close()
        wait_until(lambda: sum("127.0.0." in t for t in server.children().values()) == 0,
                   what="the children free again")
        # stress (2 s at least), then a calm second: the children accept again
        wait_until(master_sleeps_through_clients, 8, what="the children to accept again")
