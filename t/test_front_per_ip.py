"""The prefork front's per-IP cap (issue 16 point 1, follow-up): one client address
may keep at most `front_max_per_ip` connections waiting in the master's front; past
it a new one is answered 421 4.7.0 at once and closed, so one address cannot use up
the master's file descriptors. Other addresses are not affected, a place freed is
taken again, and the refusal is logged once (not once per reconnect)."""

import socket
import time

from harness import Client
from serverproc import Server, wait_until

FILES = {"loglevel": "6", "front_max_per_ip": "3"}


def connect_from(server, ip):
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10,
                                    source_address=(ip, 0))
    client = Client(sock, timeout=10)
    client.read_reply()
    return client


def test_one_ip_gets_421_past_front_max_per_ip(mail_config):
    srv = mail_config(files=FILES)
    with Server("qpsmtpd-prefork", srv, "--children", "2", "--idle-children", "2",
                "--max-from-ip", "1") as server:
        wait_until(lambda: len(server.children()) == 2, what="2 children")
        first = connect_from(server, "127.0.0.2")            # a worker has it
        wait_until(lambda: any("127.0.0.2" in t for t in server.children().values()),
                   what="a child serving 127.0.0.2")
        held = [connect_from(server, "127.0.0.2") for _ in range(3)]   # past --max-from-ip:
        assert all(c.code == 220 for c in held)                     # greeted by the front
        started = time.monotonic()
        refused = [connect_from(server, "127.0.0.2") for _ in range(5)]
        for c in refused:
            assert c.code == 421 and "4.7.0" in c.text and "too many connections" in c.text, c.text
            assert c.closed()
        assert time.monotonic() - started < 2                        # at once, no time-out
        other = connect_from(server, "127.0.0.3")                    # another address: fine
        assert other.code == 220
        held.pop().close()                                           # a place comes free
        again = wait_until(lambda: _greeted(server, "127.0.0.2"), 5, what="a free place")
        assert again.code == 220
        assert first.send_message("a@b.test", ["u@example.test"], "Subject: x\n\nok")[0] == 250
        for c in [first, other, again, *held]:
            c.close()
        log = server.log
        assert log.count("front: 127.0.0.2 has 3 connections waiting (front_max_per_ip)") == 1, log
        assert "Traceback" not in log


def _greeted(server, ip):
    client = connect_from(server, ip)
    if client.code == 220:
        return client
    client.close()
    return None


def test_front_max_per_ip_0_is_no_cap(mail_config):
    srv = mail_config(files={**FILES, "front_max_per_ip": "0"})
    with Server("qpsmtpd-prefork", srv, "--children", "1", "--idle-children", "1",
                "--max-from-ip", "1") as server:
        wait_until(lambda: len(server.children()) == 1, what="1 child")
        clients = [connect_from(server, "127.0.0.2") for _ in range(12)]
        assert [c.code for c in clients] == [220] * 12
        for c in clients:
            c.close()
