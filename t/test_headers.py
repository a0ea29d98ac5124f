"""headers / check_basicheaders and bogus_bounce / check_bogus_bounce in in-process
sessions (no daemons): the replies qpsmtpd's manuals promise, the Date window on
the injected clock, the old argument forms."""

import email.utils

import pytest

from scanhelp import data_reply, transaction
from qpsmtpd_py.config import ConfigError

pytestmark = pytest.mark.no_services
NOW = 1_700_000_000.0           # FakeClock's start
GOOD = ("From: a@b.test\nTo: u@example.test\nSubject: hi\nMessage-Id: <x@b.test>\n"
        f"Date: {email.utils.formatdate(NOW)}\n")


def run(session_server, line, text, **talk):
    return session_server(line, files={"loglevel": "6"}).talk(*transaction(text), **talk)


def test_good_message_passes(session_server):
    d = run(session_server, "headers past 2 future 1", GOOD + "\nbody\n")
    assert data_reply(d)[0] == 250 and "pass" in d.log


@pytest.mark.parametrize("header, reply", [
    ("To: u@example.test\nSubject: x\n", "We require a valid From header"),
    (GOOD + "Subject: again\n", "Only one Subject header allowed. See RFC 5322, Section 3.6"),
    (GOOD + "From: c@d.test\n", "Only one From header allowed. See RFC 5322, Section 3.6"),
])
def test_missing_and_repeated_fields(session_server, header, reply):
    d = run(session_server, "headers", header + "\nbody\n")
    assert data_reply(d) == (552, reply)
    assert d.connection.notes["karma"] == -1


def test_require_list_and_first_problem_wins(session_server):
    d = run(session_server, "headers require From,Date,Message-Id", "From: a@b.test\n\nbody\n")
    assert data_reply(d) == (552, "We require a valid Date header")
    assert d.connection.notes["karma"] == -2
    assert "no Date header" in d.log and "no Message-Id header" in d.log


@pytest.mark.parametrize("offset, line, reply", [
    (-3 * 86400, "headers past 2", "The Date header is too far in the past"),
    (2 * 86400, "headers future 1", "The Date header is too far in the future"),
    (-6 * 86400, "check_basicheaders 5", "The Date header is too far in the past"),
    (6 * 86400, "check_basicheaders 5", "The Date header is too far in the future"),
    (-1 * 86400, "headers past 2", None),
    (4 * 86400, "check_basicheaders 5", None),
])
def test_date_window(session_server, offset, line, reply):
    header = GOOD.replace(email.utils.formatdate(NOW), email.utils.formatdate(NOW + offset))
    d = run(session_server, line, header + "\nbody\n")
    if reply is None:
        assert data_reply(d)[0] == 250
    else:
        assert data_reply(d) == (552, reply)


def test_unparseable_date_is_only_logged(session_server):
    d = run(session_server, "headers past 1", GOOD.replace("Date: ", "Date: yesterday-ish ") + "\nx\n")
    assert data_reply(d)[0] == 250 and "skip, date not parseable" in d.log


def test_empty_message_reject_0_and_temp(session_server):
    d = session_server("headers", files={"loglevel": "6"}).talk(
        "HELO c.test", "MAIL FROM:<a@b.test>", "RCPT TO:<u@example.test>", "DATA", b".\r\n", "QUIT")
    assert data_reply(d) == (552, "You must send some data first")
    d = run(session_server, "headers reject 0", "To: u@example.test\n\nx\n")
    assert data_reply(d)[0] == 250 and "fail, tolerated" in d.log
    d = run(session_server, "headers reject_type temp", "To: u@example.test\n\nx\n")
    assert data_reply(d) == (452, "We require a valid From header")


def test_relay_clients_are_not_checked(session_server):
    d = run(session_server, "headers", "To: u@example.test\n\nx\n", relay_client=True)
    assert data_reply(d)[0] == 250


@pytest.mark.parametrize("line", ["headers require From;Date", "check_basicheaders soon",
                                  "headers past -1", "headers requires From"])
def test_bad_arguments(session_server, line):
    with pytest.raises(ConfigError):
        session_server(line)


# -- bogus_bounce --------------------------------------------------------------------------------
def bounce(rcpts=("u@example.test",), header="From: MAILER-DAEMON@b.test\nSubject: failure\n"):
    return transaction(header + "\nundeliverable\n", sender="", recipients=rcpts)


@pytest.mark.parametrize("line, code", [("bogus_bounce", 250), ("bogus_bounce log", 250),
                                        ("bogus_bounce deny", 552), ("check_bogus_bounce denysoft", 452),
                                        ("bogus_bounce action deny reject_type temp", 452),
                                        ("bogus_bounce reject 1", 552)])
def test_bounce_to_two_recipients(session_server, line, code):
    d = session_server(line, files={"loglevel": "6"}).talk(
        *bounce(("u@example.test", "v@example.test")))
    assert data_reply(d)[0] == code
    if code != 250:
        assert data_reply(d)[1] == "fail, this bounce message does not have 1 recipient"
    assert "fail, bogus bounce to: u@example.test,v@example.test" in d.log


def test_bounce_with_return_path_and_good_bounces(session_server):
    srv = session_server("bogus_bounce deny", files={"loglevel": "6"})
    d = srv.talk(*bounce(header="Return-Path: <x@y.test>\nFrom: MAILER-DAEMON@b.test\n"))
    assert data_reply(d) == (552, "a bounce return path must be empty (RFC 3834)")
    assert data_reply(srv.talk(*bounce(header="Return-Path: <>\nSubject: x\n")))[0] == 250
    assert data_reply(srv.talk(*bounce()))[0] == 250
    d = srv.talk(*transaction("Subject: x\n\ny\n", recipients=("u@example.test", "v@example.test")))
    assert data_reply(d)[0] == 250 and "pass, not a null sender" in d.log


def test_bogus_bounce_bad_word(session_server):
    with pytest.raises(ConfigError, match="action 'drop'"):
        session_server("bogus_bounce drop")
