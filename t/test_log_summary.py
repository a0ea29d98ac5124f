"""The operator's log at the default level (issue 14 item 6): with no config/loglevel
every refused command and message is logged with the plugin that decided, each mail
transaction and each connection gets one summary line, every line of a session carries
its id, and under systemd (JOURNAL_STREAM) lines carry journald's <N> priorities."""

import os
import re

import pytest

from inproc import message_wire
from qpsmtpd_py.app import Qpsmtpd
from qpsmtpd_py.config import Config

pytestmark = pytest.mark.no_services

MESSAGE = message_wire("From: a@b.test\nSubject: hi\n\nhello")


def lines_of(log):
    return [l for l in log.splitlines() if l]


def test_default_level_shows_refusals_and_summaries_not_details(session_server):
    srv = session_server()                       # no loglevel file
    d = srv.talk("EHLO client.test", "MAIL FROM:<a@b.test>", "RCPT TO:<x@remote.example>",
                 "RCPT TO:<u@example.test>", "DATA", MESSAGE, "BOGUS", "QUIT")
    assert d.codes == [220, 250, 250, 550, 250, 354, 250, 500, 221]
    log = d.log
    assert re.search(r"refused RCPT TO:<x@remote.example>: 550 .* \(rcpt_ok\)$", log, re.M), log
    assert re.search(r"refused BOGUS: 500 .*Unrecognized command$", log, re.M), log
    txn = [l for l in lines_of(log) if "transaction: " in l]
    assert len(txn) == 1, log
    assert re.search(r"transaction: client \[192\.0\.2\.10\] helo client\.test from <a@b\.test> "
                     r"to <u@example\.test> refused_to <x@remote\.example>=550 size \d+ "
                     r"result queued \(t_capture\): 250 ", txn[0]), txn[0]
    conn = [l for l in lines_of(log) if "connection: " in l]
    assert len(conn) == 1 and re.search(
        r"connection: client \[192\.0\.2\.10\] helo client\.test transactions 1 queued 1 "
        r"refused 0 commands_refused 2 end quit duration [\d.]+s$", conn[0]), log
    assert "recipient <u@example.test> accepted" not in log     # LOGINFO detail stays out


def test_every_line_of_a_session_carries_its_id(session_server):
    srv = session_server()
    first = srv.talk("HELO c", "MAIL FROM:<a@b.test>", "RCPT TO:<x@remote.example>", "QUIT")
    second = srv.talk("HELO c", "NOOP", "FOO", "QUIT")
    ids = []
    for d in (first, second):
        found = {re.search(r"\[(\d+-\d+-\d+)\]", l).group(1) for l in lines_of(d.log)}
        assert len(found) == 1, d.log
        ids += found
    assert ids[0] != ids[1]
    assert first.connection.id == ids[0]


def test_transaction_lines_for_refused_sender_message_and_abandoned(session_server):
    srv = session_server(files={"badmailfrom": "@spam.example", "databytes": "100"})
    d = srv.talk("EHLO c", "MAIL FROM:<a@b.test> SIZE=5000",            # refused at MAIL
                 "MAIL FROM:<a@b.test>", "RCPT TO:<u@example.test>", "RSET",   # abandoned
                 "MAIL FROM:<a@b.test>", "RCPT TO:<u@example.test>", "DATA",
                 message_wire("Subject: big\n\n" + "x" * 300), "QUIT")
    txn = [l for l in lines_of(d.log) if "transaction: " in l]
    assert len(txn) == 3, d.log
    assert re.search(r"from <a@b\.test> to - size 0 result refused at MAIL 552: ", txn[0]), txn
    assert re.search(r"to <u@example\.test> size 0 result no message$", txn[1]), txn
    assert re.search(r"to <u@example\.test> size \d+ result refused: 552 ", txn[2]), txn
    assert re.search(r"transactions 3 queued 0 refused 2 ", d.log), d.log


def test_client_input_cannot_forge_lines(session_server):
    d = session_server().talk("EHLO c", "MAIL FROM:<a@b.test>",
                              "RCPT TO:<x\x1b@remote.example>" + "y" * 400, "QUIT")
    refused = [l for l in lines_of(d.log) if "refused RCPT" in l]
    assert len(refused) == 1 and "\x1b" not in refused[0] and len(refused[0]) < 500, d.log


def test_a_loglevel_file_still_rules(session_server):
    d = session_server(files={"loglevel": "4"}).talk("HELO c", "FOO", "QUIT")
    assert d.log == ""


def test_journald_priorities_when_stderr_is_the_journal(mail_config, tmp_path, monkeypatch):
    cfg = mail_config()
    with open(tmp_path / "journal", "w+") as stream:
        st = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        app = Qpsmtpd(Config([cfg.dir]), stderr=stream).load()
        app.log(5, "hello")
        app.log(2, "trace\nback")
        app.log(6, "not shown")
        stream.seek(0)
        text = stream.read()
    assert re.fullmatch(r"<5>\d+ hello\n<2>\d+ trace\n<2>back\n", text), text


def test_plain_lines_when_journal_stream_names_another_file(mail_config, tmp_path, monkeypatch):
    cfg = mail_config()
    monkeypatch.setenv("JOURNAL_STREAM", "1:1")
    with open(tmp_path / "log", "w+") as stream:
        app = Qpsmtpd(Config([cfg.dir]), stderr=stream).load()
        app.log(5, "hello")
        stream.seek(0)
        assert re.fullmatch(r"\d+ hello\n", stream.read())
