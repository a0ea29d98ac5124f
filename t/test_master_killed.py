"""The master killed with -9 (issue 16 point 7): its children notice at once
(PR_SET_PDEATHSIG), let go of the listening socket, and finish only the session
in progress within --graceful-timeout; a restart right after works. Children
killed from outside do not make the master back off its forks."""

import os
import signal
import time

import pytest

from serverproc import Server, alive, connect_refused, wait_until

LOG = {"loglevel": "6"}


def drip_noops(client, every=0.3, limit=10.0):
    """Send NOOP every `every` seconds until the server closes (or `limit` seconds
    have passed); returns the replies seen."""
    replies = []
    deadline = time.monotonic() + limit
    try:
        while time.monotonic() < deadline:
            client.send("NOOP\r\n")
            replies.append(client.read_reply()[0])
            time.sleep(every)
    except (EOFError, OSError):
        pass
    return replies


@pytest.mark.parametrize("program,pool", [("qpsmtpd-prefork", ("--children", "3")),
                                          ("qpsmtpd-forkserver", ())])
def test_kill_9_of_the_master_frees_the_port_and_bounds_sessions(mail_config, program, pool):
    srv = mail_config(files=LOG)
    server = Server(program, srv, *pool, "--graceful-timeout", "4")
    try:
        finisher, dripper = server.client(), server.client()
        assert finisher.code == dripper.code == 220
        finisher.ehlo()
        assert finisher.cmd("MAIL FROM:<a@b.test>")[0] == 250
        kids = wait_until(lambda: len(server.children()) >= 2 and list(server.children()),
                          what="children")
        killed = time.monotonic()
        server.proc.kill()
        server.proc.wait()
        # nobody listens any more within a moment: a new client is refused, not ignored
        wait_until(lambda: connect_refused(server.port), 1.0, interval=0.01,
                   what="the listening socket to be released by every child")
        # the session in progress may finish within the bound ...
        assert finisher.cmd("RCPT TO:<u@example.test>")[0] == 250
        assert finisher.cmd("DATA")[0] == 354
        finisher.send("Subject: orphan\r\n\r\nfinished\r\n.\r\n")
        assert finisher.read_reply()[0] == 250
        # a restart on the same port works right away
        with Server(program, srv, *pool, port=server.port) as again:
            with again.client() as c:
                assert c.send_message("a@b.test", ["u@example.test"], "Subject: new\n\nnew")[0] == 250
        # ... but a client that never stops is cut at --graceful-timeout 4
        replies = drip_noops(dripper)
        took = time.monotonic() - killed
        assert 3.5 < took < 6.5, took
        assert replies[-1] == 421 and set(replies[:-1]) == {250}, replies
        wait_until(lambda: not any(alive(pid) for pid in kids), 3, what="every orphan to exit")
        assert len(srv.messages()) == 2
    finally:
        for pid in server.children():
            os.kill(pid, signal.SIGKILL)
        server.stop()


def test_children_killed_from_outside_are_replaced_at_once(mail_config):
    """Killing young children one after another used to back the master off for up
    to 10 s (the pool fell to 2 idle children); only a child that fails by itself
    (an exit status, a crash) delays the next fork."""
    srv = mail_config(files=LOG)
    with Server("qpsmtpd-prefork", srv, "--children", "3", "--idle-children", "3") as server:
        for _ in range(8):
            kids = wait_until(lambda: len(server.children()) == 3 and server.children(), 2,
                              interval=0.005, what="a full pool")
            os.kill(min(kids), signal.SIGKILL)
            wait_until(lambda: min(kids) not in server.children(), 2, interval=0.005,
                       what="the killed child to be reaped")
        started = time.monotonic()
        wait_until(lambda: len(server.children()) == 3, 2, interval=0.005, what="a full pool")
        assert time.monotonic() - started < 0.5
        assert "next fork in" not in server.log
