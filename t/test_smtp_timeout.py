"""Time-outs (config `timeout`): an idle client is told 421 and disconnected, the
disconnect hooks still run, and a message cut short by a time-out is not delivered
and leaves nothing in the spool. The session's side runs in-process on a fake
clock (exact times, no waiting); real clients check the kernel's timer."""

import re
import time

import pytest

from inproc import SILENCE, Pause, spool_files

DONE_HOOKS = "disconnect\npost-connection\n"


def make(mail_config, tmp_path, timeout="1"):
    """A real server with timeout 1 that marks its disconnect hooks in a file."""
    marks = tmp_path / "marks"
    srv = mail_config(f"t_marker {marks} disconnect post-connection", files={"timeout": timeout})
    return srv, marks


def in_process(session_server, tmp_path, **files):
    marks = tmp_path / "marks"
    return session_server(f"t_marker {marks} disconnect post-connection", files=files), marks


def wait_timeout_reply(c):
    start = time.monotonic()
    code, lines = c.read_reply()
    waited = time.monotonic() - start
    return code, lines, waited


@pytest.mark.no_services
@pytest.mark.parametrize("timeout, seconds", [("30", 30), (None, 1200)])
def test_idle_client_after_ehlo(session_server, tmp_path, timeout, seconds):
    srv, marks = in_process(session_server, tmp_path, **({"timeout": timeout} if timeout else {}))
    d = srv.talk("EHLO client.test", Pause(SILENCE), "QUIT")
    ehlo, reply = d.replies[1:]
    assert reply.code == 421
    assert re.fullmatch(r"4\.4\.2 .*timeout.*", reply.text, re.I), reply.text
    assert reply.raw.endswith(b"\r\n")
    assert reply.at - ehlo.at == seconds                   # exactly the time-out, 1200 by default
    assert d.unread == b"QUIT\r\n" and d.channel.closed     # the session ended
    assert marks.read_text() == DONE_HOOKS


@pytest.mark.no_services
def test_a_pause_shorter_than_the_timeout_is_no_timeout(session_server, tmp_path):
    srv, marks = in_process(session_server, tmp_path, timeout="30")
    d = srv.talk("EHLO client.test", Pause(29.9), "NOOP", Pause(29.9), "QUIT")
    assert d.codes == [220, 250, 250, 221]


def test_idle_client_before_greeting_reply(mail_config, tmp_path):
    srv, marks = make(mail_config, tmp_path)
    with srv.session() as c:
        code, lines, waited = wait_timeout_reply(c)
        assert code == 421 and re.match(r"4\.4\.2 .*timeout", lines[0]), lines
        assert c.raw[-1].endswith(b"\r\n")
        assert waited > 0.9                                  # the socket's own timer
        assert c.closed()
        assert c.proc.wait(5) == 0
    assert marks.read_text() == DONE_HOOKS


def test_activity_rearms_the_timer(mail_config, tmp_path):
    srv, marks = make(mail_config, tmp_path)
    with srv.session() as c:
        c.ehlo()
        for _ in range(5):                       # 2.5 s in all, never 1 s idle
            time.sleep(0.5)
            assert c.cmd("NOOP")[0] == 250
        assert c.cmd("QUIT")[0] == 221
        assert c.closed()
    assert marks.read_text() == DONE_HOOKS


@pytest.mark.no_services
def test_timeout_in_the_middle_of_data(session_server, tmp_path):
    """The body is past size_threshold, so it is on disk when the client goes quiet
    mid-line: after the 421 nothing is delivered and no spool file holds it."""
    srv, marks = in_process(session_server, tmp_path, timeout="1", size_threshold="1000")
    spool = srv.app.spool_dir
    while_reading = []
    d = srv.talk("EHLO client.test", "MAIL FROM:<a@b.test>", "RCPT TO:<u@example.test>", "DATA",
                 b"Subject: slow\r\n\r\n" + b"a line of the body\r\n" * 1000,
                 lambda: while_reading.extend(spool_files(spool)),
                 b"half a li", Pause(SILENCE))
    assert d.codes[-2:] == [354, 421] and re.match(r"4\.4\.2 ", d.replies[-1].text)
    assert d.messages == []
    assert marks.read_text() == DONE_HOOKS
    (spooled,) = while_reading                            # on disk (past the write buffer) ...
    assert spooled[1] > 10000
    assert [size for _, size in spool_files(spool)] in ([], [0])   # ... and gone after the 421


def test_slow_but_steady_data_is_accepted(mail_config, tmp_path):
    srv, _ = make(mail_config, tmp_path)
    with srv.session() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@b.test>")
        c.cmd("RCPT TO:<u@example.test>")
        assert c.cmd("DATA")[0] == 354
        c.send(b"Subject: drip\r\n\r\n")
        for i in range(3):
            time.sleep(0.5)
            c.send(b"line %d\r\n" % i)
        c.send(b".\r\n")
        assert c.read_reply()[0] == 250
    (msg,) = srv.messages()
    assert msg.endswith(b"\n\nline 0\nline 1\nline 2\n")
