"""badsubject, charset and check_content_type (the MIME walk of qpsmtpd_py/helpers/mime.py)
in in-process sessions; no daemons."""

import pytest

from scanhelp import HEADER, attachment_message, data_reply, message, transaction
from qpsmtpd_py.header import Header
from qpsmtpd_py.helpers.mime import content_type, is_multipart
from qpsmtpd_py.transaction import Transaction

pytestmark = pytest.mark.no_services


def run(session_server, line, text, files):
    return session_server(line, files={"loglevel": "6", **files}).talk(*transaction(text))


# -- badsubject -----------------------------------------------------------------------------------
@pytest.mark.parametrize("subject, code", [
    ("ATTENTION FUND BENEFICIARY. DONATION CASH AID AWARD", 552),
    ("  ATTENTION FUND BENEFICIARY.\n DONATION CASH AID AWARD ", 552),     # folded
    ("attention fund beneficiary. donation cash aid award", 250),         # literal: case kept
    ("Re: your prize is waiting", 552),
    ("lunch?", 250)])
def test_badsubject(session_server, subject, code):
    files = {"badsubject": "ATTENTION FUND BENEFICIARY. DONATION CASH AID AWARD\n"
                           "/^re: your (winning|prize)/i\n/([/\n"}
    d = run(session_server, "badsubject", message("hi\n", HEADER.replace("Subject: test", f"Subject: {subject}")),
            files)
    assert data_reply(d)[0] == code
    if code == 552:
        assert data_reply(d)[1] == "Subject refused"
    assert "bad pattern '/([/' skipped" in d.log


# -- charset --------------------------------------------------------------------------------------
CHARSETS = ("iso-2022-jp DENY Charset iso-2022-jp not accepted here\n"
            "KS_C_5601-1987 DENYSOFT\nutf-8 OK\nbig5 FROBNICATE\n")


@pytest.mark.parametrize("ctype, reply", [
    ('text/plain; charset="ISO-2022-JP"', (552, "Charset iso-2022-jp not accepted here (#5.6.1)")),
    ("text/plain; charset=ks_c_5601-1987", (452, "Content-Type denied (#4.6.1)")),
    ("text/plain; charset=utf-8", None), ("text/plain; charset=big5", None), ("text/plain", None)])
def test_charset(session_server, ctype, reply):
    d = run(session_server, "charset", message("hi\n", HEADER + f"Content-Type: {ctype}\n"),
            {"charsets": CHARSETS})
    assert data_reply(d) == reply if reply else data_reply(d)[0] == 250
    assert "unknown return code FROBNICATE" in d.log


# -- check_content_type ----------------------------------------------------------------------------
RULES = ("m{^(.*\\t)*application/x-evil(\\s|;|$)}i DENY\n"
         "m{^multipart/signed}i OK\n"
         "m{\\tmessage/rfc822\\ttext/x-later} DENYSOFT\n"
         "m{broken\n")


def nested(inner_type):
    return message(
        "--A\nContent-Type: text/plain\n\nhello\n"
        "--A\nContent-Type: multipart/alternative; boundary=\"B\"\n\n"
        "--B\nContent-Type: text/html\n\n<p>hi</p>\n"
        f"--B\nContent-Type: {inner_type};\n name=\"x.bin\"\n\nAAAA\n--B--\n--A--\n",
        HEADER + "Content-Type: multipart/mixed;\n boundary=\"A\"\n")


@pytest.mark.parametrize("text, code", [
    (nested("APPLICATION/X-EVIL"), 552), (nested("application/x-evilish"), 250),
    (attachment_message("x"), 250),
    (message("--S\nContent-Type: application/x-evil\n\nx\n--S--\n",
             HEADER + "Content-Type: multipart/signed; boundary=S\n"), 250),
    (message("--D\nContent-Type: message/rfc822\n\nSubject: inner\nContent-Type: text/x-later\n\n"
             "body\n--D--\n", HEADER + "Content-Type: multipart/mixed; boundary=D\n"), 452)])
def test_check_content_type(session_server, text, code):
    d = run(session_server, "check_content_type", text, {"content_types": RULES})
    assert data_reply(d)[0] == code
    if code == 552:
        assert data_reply(d)[1] == "Message denied"
    assert "bad rule 'm{broken' skipped" in d.log


def test_check_content_types_alias_and_the_chain(session_server):
    d = run(session_server, "check_content_types loglevel 7", nested("application/x-evil"),
            {"content_types": RULES})
    assert data_reply(d)[0] == 552
    assert ("'multipart/mixed; boundary=\"A\"\\tmultipart/alternative; boundary=\"B\"\\t"
            "application/x-evil; name=\"x.bin\"'") in d.log


def test_mime_walk_on_a_spooled_body(tmp_path):
    from qpsmtpd_py.helpers.mime import walk
    txn = Transaction(str(tmp_path), size_threshold=100)
    txn.header = Header.parse("Content-Type: multipart/mixed; boundary=\"Q\"\n")
    txn.body_append(("x" * 200 + "\n") * 50 + "--Q\nContent-Type: image/png\n\nPNG\n"
                    "--Q\n\nplain\n--Q--\n--Q\nContent-Type: text/after-the-end\n\n")
    assert txn._spooled
    assert [p.type for p in walk(txn)] == ["multipart/mixed", "image/png", "text/plain"]
    assert content_type('Text/HTML; Charset="a\\"b"; x=1') == ("text/html", {"charset": 'a"b', "x": "1"})
    assert is_multipart(txn.header) and not is_multipart(Header.parse("Content-Type: text/plain\n"))
