"""earlytalker / check_earlytalker: real clients that talk before the greeting
(or before 354) against a real server process."""

import time

import pytest

from harness import mail_server_config

TEXT = "Connecting host started transmitting before SMTP greeting"
WAIT = "0.5"


def config(make_config, *lines, loglevel=6):
    return mail_server_config(make_config, *lines, files={"loglevel": str(loglevel)})


def early(srv, env=None):
    """A client that sends EHLO the moment it connects."""
    c = srv.session(read_greeting=False, env=env)
    c.send("EHLO early.example.test\r\n")
    return c


@pytest.mark.parametrize("name", ["earlytalker", "check_earlytalker"])
def test_early_talker_refused_and_disconnected(make_config, name):
    srv = config(make_config, f"{name} wait {WAIT}")
    with early(srv) as c:
        code, lines = c.read_reply()
        assert (code, lines) == (550, [TEXT])
        assert c.closed()
    assert "fail (remote started talking before the greeting)" in c.stderr


def test_polite_client_passes_after_the_wait(make_config):
    srv = config(make_config, f"earlytalker wait {WAIT}")
    started = time.monotonic()
    with srv.session() as c:
        assert c.code == 220
        assert time.monotonic() - started >= float(WAIT)
        code, text = c.send_message("a@sender.test", ["u@example.test"], "Subject: hi\n\nbody")
        assert code == 250, text
    assert "pass, not spontaneous" in c.stderr
    assert len(srv.messages()) == 1


def test_action_denysoft_is_a_temporary_refusal(make_config):
    srv = config(make_config, f"check_earlytalker wait {WAIT} action denysoft")
    with early(srv) as c:
        assert c.read_reply() == (450, [TEXT])
        assert c.closed()


def test_reject_type_temp(make_config):
    srv = config(make_config, f"earlytalker wait {WAIT} reject_type temp")
    with early(srv) as c:
        assert c.read_reply()[0] == 450


def test_debian_action_log_only_logs(make_config):
    srv = config(make_config, f"check_earlytalker action log wait {WAIT}")
    with early(srv) as c:
        assert c.read_reply()[0] == 220
        code, _ = c.read_reply()          # the EHLO sent early is answered normally
        assert code == 250
        assert c.cmd("MAIL FROM:<a@sender.test>")[0] == 250
        assert c.cmd("QUIT")[0] == 221
    assert "fail, tolerated (remote started talking before the greeting)" in c.stderr


@pytest.mark.parametrize("name, extra, code", [
    ("earlytalker", "", 450),                   # qpsmtpd's documented default: reject_type temp
    ("check_earlytalker", "", 450),
    ("earlytalker", "reject_type temp", 450),
    ("earlytalker", "action denysoft", 450),
    ("earlytalker", "reject_type perm", 550),
    ("check_earlytalker", "action deny", 550),
])
def test_defer_reject_refuses_at_mail(make_config, name, extra, code):
    srv = config(make_config, f"{name} wait {WAIT} defer-reject 1 {extra}")
    with early(srv) as c:
        assert c.read_reply()[0] == 220
        assert c.read_reply()[0] == 250
        got, text = c.cmd("MAIL FROM:<a@sender.test>")
        assert got == code and text.endswith(TEXT)
        got, _ = c.cmd("MAIL FROM:<b@sender.test>")      # every MAIL of the connection
        assert got == code
        assert c.cmd("QUIT")[0] == 221


def test_defer_reject_lets_polite_clients_send(make_config):
    srv = config(make_config, f"earlytalker wait {WAIT} defer-reject 1")
    with srv.session() as c:
        code, text = c.send_message("a@sender.test", ["u@example.test"], "Subject: hi\n\nbody")
        assert code == 250, text


def test_check_at_data_catches_a_client_that_does_not_wait_for_354(make_config):
    srv = config(make_config, f"earlytalker wait {WAIT} check-at DATA")
    with srv.session() as c:          # no wait at connect: only DATA is checked
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@sender.test>")[0] == 250
        assert c.cmd("RCPT TO:<u@example.test>")[0] == 250
        c.send("DATA\r\nSubject: spam\r\n\r\nspam\r\n.\r\n")
        code, text = c.read_reply()
        assert code == 554 and text[-1].endswith(TEXT)
    assert srv.messages() == []


def test_check_at_connect_and_data(make_config):
    srv = config(make_config, f"earlytalker wait {WAIT} check-at connect check-at data")
    with srv.session() as c:
        assert c.code == 220
        code, text = c.send_message("a@sender.test", ["u@example.test"], "Subject: ok\n\nfine")
        assert code == 250, text
    with early(srv) as c:
        assert c.read_reply()[0] == 550


def test_relay_clients_are_immune(make_config):
    srv = config(make_config, "relay", f"earlytalker wait {WAIT}")
    with early(srv, env={"RELAYCLIENT": ""}) as c:
        assert c.read_reply()[0] == 220
        assert c.read_reply()[0] == 250


def test_good_karma_skips_the_wait(make_config):
    srv = config(make_config, "t_note karma_history 6", "earlytalker wait 5")
    started = time.monotonic()
    with srv.session() as c:
        assert c.code == 220
    assert time.monotonic() - started < 4
    assert "skip, karma 6" in c.stderr


def test_earlytalker_wait_note_overrides_wait(make_config):
    srv = config(make_config, "t_note earlytalker_wait 0.2", "earlytalker wait 5")
    started = time.monotonic()
    with srv.session() as c:
        assert c.code == 220
    assert time.monotonic() - started < 4


@pytest.mark.parametrize("args, reason", [
    ("wait", "keyword/value pairs"),
    ("check-at HELO", "check-at 'HELO'"),
    ("wait soon", "expected a number 0-300"),
    ("acton log", "unknown argument keyword 'acton'; did you mean 'action'?"),
    ("action shout", "action 'shout'"),
])
def test_bad_arguments_stop_start_up(make_config, args, reason):
    srv = config(make_config, f"earlytalker {args}")
    c = srv.session(read_greeting=False)
    assert c.closed()
    err = c.stderr
    assert c.proc.returncode == 78
    assert "config/plugins:1" in err and reason in err
