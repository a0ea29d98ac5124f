"""Time-outs (config `timeout`): an idle client is told 421 and disconnected, the
disconnect hooks still run, and a message cut short by a time-out is not delivered."""

import os
import re
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TEST_PLUGINS = os.path.join(HERE, "plugins")
REAL_PLUGINS = os.path.join(os.path.dirname(HERE), "plugins")


def make(make_config, tmp_path, timeout="1"):
    marks = tmp_path / "marks"
    srv = make_config(plugins=["rcpt_ok", f"t_marker {marks} disconnect post-connection",
                               "queue/maildir {maildir}"],
                      files={"plugin_dirs": [TEST_PLUGINS, REAL_PLUGINS], "timeout": timeout,
                             "rcpthosts": "example.test"})
    return srv, marks


def wait_timeout_reply(c):
    start = time.monotonic()
    code, lines = c.read_reply()
    waited = time.monotonic() - start
    return code, lines, waited


def test_idle_client_after_ehlo(make_config, tmp_path):
    srv, marks = make(make_config, tmp_path)
    with srv.session() as c:
        c.ehlo()
        code, lines, waited = wait_timeout_reply(c)
        assert code == 421
        assert re.fullmatch(r"4\.4\.2 .*timeout.*", lines[0], re.I), lines
        assert c.raw[-1].endswith(b"\r\n")
        assert 0.5 < waited < 5
        assert c.closed()
    assert marks.read_text() == "disconnect\npost-connection\n"


def test_idle_client_before_greeting_reply(make_config, tmp_path):
    srv, marks = make(make_config, tmp_path)
    with srv.session() as c:
        code, lines, waited = wait_timeout_reply(c)
        assert code == 421 and re.match(r"4\.4\.2 .*timeout", lines[0]), lines
        assert c.raw[-1].endswith(b"\r\n")
        assert c.closed()
        assert c.proc.wait(5) == 0
    assert marks.read_text() == "disconnect\npost-connection\n"


def test_activity_rearms_the_timer(make_config, tmp_path):
    srv, marks = make(make_config, tmp_path)
    with srv.session() as c:
        c.ehlo()
        for _ in range(5):                       # 2.5 s in all, never 1 s idle
            time.sleep(0.5)
            assert c.cmd("NOOP")[0] == 250
        assert c.cmd("QUIT")[0] == 221
        assert c.closed()
    assert marks.read_text() == "disconnect\npost-connection\n"


def test_timeout_in_the_middle_of_data(make_config, tmp_path):
    srv, marks = make(make_config, tmp_path)
    with srv.session() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@b.test>")
        c.cmd("RCPT TO:<u@example.test>")
        assert c.cmd("DATA")[0] == 354
        c.send(b"Subject: slow\r\n\r\nfirst line\r\nhalf a li")
        code, lines, waited = wait_timeout_reply(c)
        assert code == 421 and re.match(r"4\.4\.2 ", lines[0]), lines
        assert c.closed()
    assert srv.messages() == []
    assert marks.read_text() == "disconnect\npost-connection\n"
    # no spool file is left behind
    spool = os.path.join(srv.tmp, "spool")
    assert not os.path.isdir(spool) or os.listdir(spool) == []


def test_slow_but_steady_data_is_accepted(make_config, tmp_path):
    srv, _ = make(make_config, tmp_path)
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
