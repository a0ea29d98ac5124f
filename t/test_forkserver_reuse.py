"""qpsmtpd-forkserver hands connections to children it already forked (issue 15:
a fork per connection cost 3.5-7 ms of CPU); free children leave when the server
has been quiet for --max-idle seconds, so at rest it is just the master, as before."""

import signal
import time

from serverproc import Server, wait_until

FORKSERVER = "qpsmtpd-forkserver"
LOG = {"loglevel": "6"}
TITLE = "qpsmtpd-forkserver child: "


def serving(server):
    """pid of the child whose title shows a client."""
    return wait_until(lambda: next((pid for pid, title in server.children().items()
                                    if title.startswith(TITLE + "127.0.0.1")), None),
                      what="a child serving the client")


def test_a_free_child_serves_the_next_client_then_leaves_when_quiet(mail_config):
    srv = mail_config(files=LOG)
    with Server(FORKSERVER, srv, "--max-idle", "2") as server:
        with server.client() as c:
            first = serving(server)
            assert c.send_message("a@b.test", ["u@example.test"], "Subject: 1\n\none")[0] == 250
            c.cmd("QUIT")
            assert c.closed()              # no other process holds the connection open
        wait_until(lambda: server.title().endswith(" 0 of 15 connections"), what="the session to end")
        wait_until(lambda: server.children().get(first) == TITLE + "idle", what="the child to be free")
        forked = set(server.children())
        with server.client() as c:
            second = serving(server)
            assert c.send_message("a@b.test", ["u@example.test"], "Subject: 2\n\ntwo")[0] == 250
            c.cmd("QUIT")
            assert c.closed()
        assert second in forked            # no fork for the second client
        assert len(srv.messages()) == 2
        wait_until(lambda: not server.children(), timeout=8, what="the free children to leave")


def test_free_children_wait_for_the_next_burst(mail_config):
    """By default (--max-idle 60) a free child is still there for a client that comes a
    few seconds later (it was retired after 2 s before), and serves it without a fork."""
    srv = mail_config(files=LOG)
    with Server(FORKSERVER, srv) as server:
        with server.client() as c:
            first = serving(server)
            c.cmd("QUIT")
        wait_until(lambda: server.children().get(first) == TITLE + "idle", what="the child to be free")
        time.sleep(3)
        assert server.children().get(first) == TITLE + "idle", server.children()
        with server.client() as c:
            assert serving(server) == first
            c.cmd("QUIT")


def test_after_a_reload_no_old_child_is_reused(mail_config):
    srv = mail_config(files={**LOG, "smtpgreeting": "first"})
    with Server(FORKSERVER, srv) as server:
        with server.client() as c:
            assert "first" in c.text
            c.cmd("QUIT")
        wait_until(lambda: TITLE + "idle" in server.children().values(), what="a free child")
        old = set(server.children())
        srv.write("smtpgreeting", "second")
        server.signal(signal.SIGHUP)
        wait_until(lambda: "reload done" in server.log, what="the reload")
        with server.client() as c:
            assert "second" in c.text
            assert serving(server) not in old
            c.cmd("QUIT")
        wait_until(lambda: not old & set(server.children()), what="the old children to leave")
