"""milter: the real opendkim (t/services) signing, verifying and rejecting a broken
signature; t/stubs/testmilter.py for protocol 2 and 6, option negotiation, macros
and symbol lists, every end-of-message change, every verdict at every stage,
several milters in a row, and a milter that hangs or is not there."""

import time

import pytest

from harness import service_env
from scanhelp import data_reply, free_port, header_of, message, transaction
from stubs.testmilter import (
    ACCEPT, ADD_HEADER, ADD_RCPT, CHANGE_FROM, CHANGE_HEADER, CONTINUE, DELETE_RCPT, DISCARD,
    INSERT_HEADER, PROGRESS, QUARANTINE, REJECT, REPLACE_BODY, REPLY, SKIP, TEMPFAIL, TestMilter,
)
from qpsmtpd_py.config import ConfigError
from qpsmtpd_py.helpers.milter import V6_PROTOCOL

OWN = ("From: Alice <alice@example.test>\nTo: bob@example.test\nSubject: signed\n"
       "Date: Thu, 03 Dec 2026 10:00:00 +0000\nMessage-Id: <dkim.1@example.test>\n")


@pytest.fixture
def milters():
    made = []

    def make(**kw):
        made.append(TestMilter(**kw))
        return made[-1]
    yield make
    for milter in made:
        milter.close()


@pytest.fixture
def run(session_server):
    def talk(lines, text=message("hello\n"), files=None, **kw):
        lines = [lines] if isinstance(lines, str) else lines
        srv = session_server(*lines, files={"loglevel": "6", **(files or {})})
        return srv.talk(*transaction(text, **{k: v for k, v in kw.items() if k != "remote_ip"}),
                        **({"remote_ip": kw["remote_ip"]} if "remote_ip" in kw else {}))
    return talk


# -- the real opendkim ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def opendkim():
    return f"{service_env('QPT_MILTER_HOST')}:{service_env('QPT_MILTER_PORT')}"


def test_opendkim_signs_then_verifies_and_rejects_a_broken_signature(run, opendkim):
    line = f"milter opendkim {opendkim}"
    # from an internal host (InternalHosts 127.0.0.1): opendkim signs, inserting on top
    d = run(line, message("Hello Bob.\n", OWN), remote_ip="127.0.0.1")
    assert data_reply(d)[0] == 250, d.log
    signed = d.messages[0]
    assert signed["header"].startswith("DKIM-Signature: ")
    assert "d=example.test" in header_of(signed)["dkim-signature"][0]
    text = signed["message"].decode()
    # from outside: opendkim verifies (DNS through the test nsd) and says so
    d = run(line, text, remote_ip="192.0.2.10")
    assert data_reply(d)[0] == 250, d.log
    results = header_of(d.messages[0])["authentication-results"]
    assert results[0].startswith("mx.example.test") and "dkim=pass" in results[0]
    # a changed body breaks the signature: On-BadSignature reject
    d = run(line, text.replace("Hello Bob.", "Hello Eve."), remote_ip="192.0.2.10")
    code, reply = data_reply(d)
    assert code == 552 and reply.startswith("Rejected at end of DATA by opendkim milter ("), reply
    assert d.messages == []


# -- protocol ----------------------------------------------------------------------------------
def test_protocol_6_stages_and_macros(run, milters):
    milter = milters()
    d = run(f"milter test {milter.address}", message("line one\n.dot line\n"),
            recipients=("u@example.test", "v@example.test"))
    assert data_reply(d)[0] == 250
    assert milter.offered == (6, 0x1FF, V6_PROTOCOL)
    stages = milter.quit_seen()
    assert stages[:6] == ["connect", "helo", "mail", "rcpt", "rcpt", "data"]
    assert stages[-4:] == ["eoh", "body", "eom", "quit"]
    seen = [entry for entry in milter.seen if entry[0] != "macro"]
    assert {v[0] for s, v in seen if s == "header"} >= {"Received", "From", "Subject"}
    connect = next(v for s, v in seen if s == "connect")
    assert connect == ("[192.0.2.10]", "4", 0, "192.0.2.10")
    assert next(v for s, v in seen if s == "mail") == ("<a@b.test>",)
    body = next(v for s, v in seen if s == "body")
    assert body == b"line one\r\n.dot line\r\n\r\n"                # CRLF, dot-unstuffed
    assert milter.macros("C")["j"] == "mx.example.test"
    assert milter.macros("C")["{client_addr}"] == "192.0.2.10"
    assert milter.macros("M")["{mail_addr}"] == "a@b.test"
    assert milter.macros("R")["{rcpt_addr}"] == "v@example.test"
    assert milter.macros("E")["i"] == milter.macros("M")["i"]


def test_protocol_2_as_qpsmtpd_spoke_it(run, milters):
    milter = milters(version=2, actions=0x1F, protocol=0)
    d = run(f"milter test {milter.address} protocol 2")
    assert data_reply(d)[0] == 250
    assert milter.offered == (2, 0x1F, 0x7F)
    assert "data" not in milter.stages() and "eom" in milter.stages()


def test_symbol_lists_and_skipped_stages(run, milters):
    # the milter wants only {client_addr} at connect, no HELO, no header replies
    milter = milters(symlists={0: "{client_addr}"}, protocol=0x02 | 0x80)
    d = run(f"milter test {milter.address}")
    assert data_reply(d)[0] == 250
    assert milter.macros("C") == {"{client_addr}": "192.0.2.10"}
    assert "helo" not in milter.stages() and "header" in milter.stages()


def test_several_milters_in_a_row_one_adds_one_rejects(run, milters):
    first = milters(replies={"eom": [ADD_HEADER("X-First", "was here"), CONTINUE]})
    second = milters(replies={"eom": lambda v: [REJECT]})
    d = run([f"milter first {first.address}", f"milter second {second.address}"])
    assert data_reply(d) == (552, "Rejected at end of DATA by second milter (Reject command "
                                  "with 5xx error)")
    # the second milter saw the message as the first one left it
    assert ("header", ("X-First", "was here")) in second.seen
    d = run(f"milter first {first.address}")
    assert header_of(d.messages[0])["x-first"] == ["was here"]


def test_header_changes(run, milters):
    milter = milters(replies={"eom": [
        ADD_HEADER("X-Added", "at the end"), INSERT_HEADER(0, "X-Top", "first line"),
        CHANGE_HEADER(1, "Subject", "changed subject"), CHANGE_HEADER(1, "Message-Id", ""),
        CHANGE_HEADER(2, "To", "second to"), ACCEPT]})
    d = run(f"milter test {milter.address}")
    msg = d.messages[0]
    fields = header_of(msg)
    assert msg["header"].startswith("X-Top: first line\n")
    # added at the end, then the change of a 2nd To (there is none) adds one
    assert msg["header"].rstrip("\n").endswith("X-Added: at the end\nTo: second to")
    assert fields["subject"] == ["changed subject"] and "message-id" not in fields
    assert fields["to"] == ["u@example.test", "second to"]


def test_body_and_envelope_changes(run, milters):
    milter = milters(replies={"eom": [
        REPLACE_BODY(b"new body\r\nline "), REPLACE_BODY(b"two\r\n"), ADD_RCPT("<w@example.test>"),
        DELETE_RCPT("<u@example.test>"), CHANGE_FROM("<bounce@b.test>"), CONTINUE]})
    d = run(f"milter test {milter.address}", message("old body\n"))
    [msg] = d.messages
    assert msg["body"] == b"new body\nline two\n"
    assert msg["recipients"] == ["<w@example.test>"] and msg["sender"] == "<bounce@b.test>"


@pytest.mark.parametrize("stage, reply, code, text", [
    ("helo", REJECT, 550, "Rejected at HELO by test milter (Reject command with 5xx error)"),
    ("mail", TEMPFAIL, 450, "Rejected at MAIL FROM by test milter (Reject command with 4xx error)"),
    ("rcpt", REPLY("550 5.1.1 no such user"), 550, "Rejected at RCPT TO by test milter "
     "(5.1.1 no such user)"),
    ("data", REPLY("451 4.3.0 busy"), 451, "Rejected at DATA by test milter (4.3.0 busy)"),
    ("eoh", REJECT, 552, "Rejected at end headers by test milter (Reject command with 5xx error)"),
    ("body", TEMPFAIL, 452, "Rejected at body by test milter (Reject command with 4xx error)"),
    ("eom", REPLY("554 5.7.1 spam not welcome"), 552,
     "Rejected at end of DATA by test milter (5.7.1 spam not welcome)"),
])
def test_refusals_at_each_stage(run, milters, stage, reply, code, text):
    milter = milters(replies={stage: [PROGRESS, reply]})
    d = run(f"milter test {milter.address}")
    assert (code, text) in d.pairs, d.pairs
    assert d.messages == []


def test_header_refusal_names_the_field(run, milters):
    milter = milters(replies={"header": lambda v: [REJECT] if v[0] == "Subject" else [CONTINUE]})
    d = run(f"milter test {milter.address}")
    assert data_reply(d) == (552, "Rejected at header Subject by test milter (Reject command "
                                  "with 5xx error)")


def test_rcpt_refusal_is_per_recipient(run, milters):
    milter = milters(replies={"rcpt": lambda v: [REJECT] if v[0] == "<v@example.test>" else [CONTINUE]})
    srv_lines = f"milter test {milter.address}"
    d = run(srv_lines, recipients=("u@example.test",))
    assert data_reply(d)[0] == 250
    d = run(srv_lines, recipients=("v@example.test",))
    assert (550, "Rejected at RCPT TO by test milter (Reject command with 5xx error)") in d.pairs


def test_connect_refusal_is_told_at_helo(run, milters):
    milter = milters(replies={"connect": [REJECT]})
    d = run(f"milter test {milter.address}")
    assert d.codes[:2] == [220, 550]
    assert d.replies[1].text == "Rejected at connection by test milter (Reject command with 5xx error)"
    assert d.codes[2] >= 500 and d.messages == []                 # no mail gets through


def test_discard_accepts_and_drops(run, milters):
    milter = milters(replies={"eom": [DISCARD]})
    d = run(f"milter test {milter.address}")
    assert data_reply(d) == (250, "Queued") and d.messages == []
    milter = milters(replies={"rcpt": [DISCARD]})
    d = run(f"milter test {milter.address}")
    assert data_reply(d)[0] == 250 and d.messages == [] and "eom" not in milter.stages()


def test_accept_ends_filtering_of_the_message(run, milters):
    milter = milters(replies={"mail": [ACCEPT]})
    d = run(f"milter test {milter.address}")
    assert data_reply(d)[0] == 250 and len(d.messages) == 1
    assert "header" not in milter.stages() and "eom" not in milter.stages()


def test_skip_ends_the_body(run, milters):
    milter = milters(protocol=0x400, replies={"body": [SKIP]})
    d = run(f"milter test {milter.address}", message("x" * 70 + "\n") * 3000)
    assert data_reply(d)[0] == 250
    assert milter.stages().count("body") == 1 and "eom" in milter.stages()


@pytest.mark.parametrize("policy, code", [("deliver", 250), ("reject", 552), ("tempfail", 452)])
def test_quarantine(run, milters, policy, code):
    milter = milters(replies={"eom": [QUARANTINE("looks odd"), CONTINUE]})
    d = run(f"milter test {milter.address} quarantine {policy}")
    assert data_reply(d)[0] == code
    if code == 250:
        assert header_of(d.messages[0])["x-milter-quarantine"] == ["test: looks odd"]


def test_abort_after_rset(session_server, milters):
    milter = milters()
    srv = session_server(f"milter test {milter.address}")
    srv.talk("HELO c.test", "MAIL FROM:<a@b.test>", "RSET", "QUIT")
    assert milter.quit_seen() == ["connect", "helo", "mail", "abort", "quit"]


# -- failures ------------------------------------------------------------------------------------
def test_hanging_milter_costs_its_timeout(run, milters):
    milter = milters(hang={"eom"})
    start = time.monotonic()
    d = run(f"milter test {milter.address} timeout 1")
    elapsed = time.monotonic() - start
    assert data_reply(d) == (452, "Rejected at end of DATA by test milter (milter unavailable)")
    assert 0.9 <= elapsed < 2.5, elapsed
    d = run(f"milter test {milter.address} timeout 1 failure accept")
    assert data_reply(d)[0] == 250
    assert header_of(d.messages[0])["x-scan-failed"][0].startswith("milter test: milter test at ")


def test_absent_milter(run):
    port = free_port()
    d = run(f"milter test {port}")
    assert d.codes[1] == 450
    assert d.replies[1].text == "Rejected at connection by test milter (milter unavailable)"
    d = run(f"milter test inet:{port}@127.0.0.1 failure accept")
    assert data_reply(d)[0] == 250
    assert "refused" in header_of(d.messages[0])["x-scan-failed"][0]


@pytest.mark.no_services
@pytest.mark.parametrize("line, error", [("milter", "missing argument name"),
                                         ("milter test", "missing argument address"),
                                         ("milter test localhost:x", "address 'localhost:x'"),
                                         ("milter test 8891 protocol 4", "protocol '4'")])
def test_bad_arguments(session_server, line, error):
    with pytest.raises(ConfigError, match=error):
        session_server(line)
