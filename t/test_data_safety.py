"""DATA safety: SMTP smuggling vectors, bare line ends, NUL bytes, line-length
limits, dot-unstuffing, and messages without a header block; all against a real
`qpsmtpd` process delivering into a Maildir."""

import re
import time
import pytest


SMUGGLED = (b"MAIL FROM:<evil@b.test>\r\n"
            b"RCPT TO:<victim@example.test>\r\n"
            b"DATA\r\n"
            b"Subject: smuggled\r\n\r\nsmuggled body\r\n")

# the separator between an innocent body line and the smuggled transaction
VECTORS = {
    "LF.CRLF": b"\n.\r\n",
    "CR.CR": b"\r.\r",
    "LF.LF": b"\n.\n",
    "CRLF.LF": b"\r\n.\n",
    ".CRCRLF": b"\r\n.\r\r\n",
    "CRLF.CR-midline": b"\r\n.\r",
    "CR.CRLF": b"\r.\r\n",
    "LF.CR": b"\n.\r",
}


@pytest.fixture
def srv(mail_config, tmp_path):
    marks = tmp_path / "marks"

    def make(files=None):
        s = mail_config(f"t_marker {marks} mail rcpt data", files=files)
        s.marks = marks
        return s
    return make


def open_data(c):
    c.ehlo()
    assert c.cmd("MAIL FROM:<a@b.test>")[0] == 250
    assert c.cmd("RCPT TO:<u@example.test>")[0] == 250
    assert c.cmd("DATA")[0] == 354


def smuggle(srv, vector):
    """Send one message hiding a second transaction; returns the end-of-data reply
    and proves that no other reply was sent before QUIT's."""
    with srv.session() as c:
        open_data(c)
        c.send(b"Subject: innocent\r\n\r\nline1" + vector + SMUGGLED + b"\r\n.\r\n")
        reply = c.read_reply()
        # had the smuggled commands run, their 250/250/354/250 would come next
        code, text = c.cmd("QUIT")
        assert code == 221, (reply, code, text)
        assert c.closed()
    # the mail/rcpt/data hooks ran for the real transaction only
    assert srv.marks.read_text() == "mail\nrcpt\ndata\n"
    return reply


@pytest.mark.parametrize("vector", list(VECTORS.values()), ids=list(VECTORS))
def test_smuggling_refused_by_default(srv, vector):
    s = srv()
    code, lines = smuggle(s, vector)
    assert code == 554 and lines[0].startswith("5.6.0 "), lines
    assert "bare CR or LF" in lines[0]
    assert s.messages() == []


@pytest.mark.parametrize("vector", list(VECTORS.values()), ids=list(VECTORS))
def test_smuggling_normalized_is_one_message(srv, vector):
    s = srv(files={"bare_newlines": "normalize"})
    code, lines = smuggle(s, vector)
    assert code == 250, lines
    (msg,) = s.messages()
    assert b"\r" not in msg
    # the "commands" are just text inside the one message, on lines of their own
    assert b"\nMAIL FROM:<evil@b.test>\nRCPT TO:<victim@example.test>\nDATA\n" in msg
    assert msg.endswith(b"\nsmuggled body\n\n")
    assert b"Delivered-To: victim" not in msg


def test_refused_message_leaves_session_usable(srv):
    s = srv()
    with s.session() as c:
        open_data(c)
        c.send(b"Subject: x\r\n\r\nbare\nline\r\n.\r\n")
        code, lines = c.read_reply()
        assert code == 554 and lines[0].startswith("5.6.0")
        assert c.cmd("RCPT TO:<u@example.test>")[0] == 503      # transaction was reset
        code, text = c.send_message("a@b.test", ["u@example.test"], "Subject: ok\n\nclean", ehlo=False)
        assert code == 250, text
    (msg,) = s.messages()
    assert msg.endswith(b"\n\nclean\n")


def test_clean_crlf_message_is_stored_with_lf(srv):
    s = srv()
    with s.session() as c:
        open_data(c)
        c.send(b"Subject: x\r\n\r\nline one\r\n\r\nline three\r\n.\r\n")
        assert c.read_reply()[0] == 250
    (msg,) = s.messages()
    assert msg.endswith(b"Subject: x\n\nline one\n\nline three\n") and b"\r" not in msg


def test_nul_byte_in_command(srv):
    s = srv()
    with s.session() as c:
        c.ehlo()
        c.send(b"MAIL FROM:<a@b.test>\x00 SIZE=1\r\n")
        code, _ = c.read_reply()
        assert code == 500
        c.send(b"NO\x00OP\r\n")
        assert c.read_reply()[0] == 500
        # nothing was accepted
        assert c.cmd("RCPT TO:<u@example.test>")[0] == 503
        assert c.cmd("NOOP")[0] == 250
    assert not s.marks.exists()


def test_command_line_limit(srv):
    s = srv()
    with s.session() as c:
        c.cmd("HELO client.test")
        assert c.cmd("NOOP " + "x" * 505)[0] == 250          # 512 octets with CRLF: allowed
        assert c.cmd("NOOP " + "x" * 506) == (500, "5.5.2 Line too long")
        assert c.cmd("MAIL FROM:<" + "a" * 600 + "@b.test>") == (500, "5.5.2 Line too long")
        assert c.cmd("RCPT TO:<u@example.test>")[0] == 503   # the long MAIL did not count
        # a huge line sent in pieces, then the session goes on
        c.send(b"NOOP " + b"y" * 100000)
        c.send(b"y" * 100000 + b"\r\n")
        assert c.read_reply() == (500, ["5.5.2 Line too long"])
        assert c.cmd("MAIL FROM:<a@b.test>")[0] == 250
        assert c.cmd("QUIT")[0] == 221


@pytest.mark.parametrize("files, line, accepted", [
    # the default accepts lines of any length, as qpsmtpd and Postfix do
    ({}, b"z" * 998, True),
    ({}, b"." + b"z" * 998, True),                # on the wire: 999 octets + CRLF
    ({}, b"z" * 300000, True),
    ({}, b"." + b"y" * 5000000, True),            # 5 MB, dot-stuffed
    ({"data_line_limit": "0"}, b"z" * 300000, True),   # 0 = unlimited
    # the admin's opt-in limit counts CRLF but never the transparency dot
    ({"data_line_limit": "1000"}, b"z" * 998, True),
    ({"data_line_limit": "1000"}, b"." + b"z" * 997, True),   # 998 octets of text
    ({"data_line_limit": "1000"}, b"z" * 999, False),
    ({"data_line_limit": "1000"}, b"." + b"z" * 998, False),
    ({"data_line_limit": "1000"}, b"z" * 300000, False),
    ({"data_line_limit": "2000"}, b"z" * 1500, True),
    ({"data_line_limit": "2000"}, b"z" * 1999, False),
])
def test_data_line_limit(srv, files, line, accepted):
    s = srv(files=files)
    wire = b"." + line if line.startswith(b".") else line       # dot-stuffing
    with s.session() as c:
        open_data(c)
        c.send(b"Subject: long\r\n\r\nstart\r\n" + wire + b"\r\nend\r\n.\r\n")
        code, lines = c.read_reply()
        if accepted:
            assert code == 250, lines
        else:
            assert code == 554 and lines[0].startswith("5.6.0 "), lines
            assert "line longer than" in lines[0]
        assert c.cmd("NOOP")[0] == 250
    if accepted:
        (msg,) = s.messages()
        assert msg.endswith(b"\nstart\n" + line + b"\nend\n")
    else:
        assert s.messages() == []


@pytest.mark.parametrize("pieces, accepted", [
    ([b"q" * 70000, b"q" * 29998], True),           # 99998 octets: at the limit
    ([b"q" * 70000, b"q" * 29999], False),          # one more
    ([b".." + b"q" * 69998, b"q" * 29999], True),   # stuffed dot + 99998 octets
])
def test_long_line_in_pieces_counts_across_reads(srv, pieces, accepted):
    """A line longer than the reader's piece size (64 KiB) is handed on in pieces;
    its length still counts whole against data_line_limit, without the stuffing dot."""
    s = srv(files={"data_line_limit": "100000"})
    with s.session() as c:
        open_data(c)
        c.send(b"Subject: pieces\r\n\r\n")
        for piece in pieces:
            c.send(piece)
        c.send(b"\r\n.\r\n")
        code, lines = c.read_reply()
        if accepted:
            assert code == 250, lines
        else:
            assert code == 554 and "line longer than 100000" in lines[0], lines
    if accepted:
        (msg,) = s.messages()
        assert msg.endswith(b"\n\n" + b"".join(pieces)[1 if pieces[0][:2] == b".." else 0:] + b"\n")
    else:
        assert s.messages() == []


def test_long_header_line_is_kept(srv):
    """A 3 MB header line (no CRLF for a long time) is accepted and stored whole;
    the reader ends the header block at its bound and keeps the rest as body."""
    s = srv()
    value = b"h" * 3000000
    with s.session() as c:
        open_data(c)
        c.send(b"X-Long: " + value + b"\r\nSubject: after\r\n\r\nbody\r\n.\r\n")
        assert c.read_reply()[0] == 250
    (msg,) = s.messages()
    assert b"X-Long: " + value + b"\nSubject: after\n\nbody\n" in msg


@pytest.mark.parametrize("payload", [
    b"a\x00b\r\n",
    b"\r\n\x00.\r\n",                         # SEC Consult's fake end-of-data
    b"\x00\r\n",
])
def test_nul_in_data_refused(srv, payload):
    s = srv()
    with s.session() as c:
        open_data(c)
        c.send(b"Subject: nul\r\n\r\nbefore\r\n" + payload + b"after\r\n.\r\n")
        code, lines = c.read_reply()
        assert code == 554 and lines[0].startswith("5.6.0 ") and "NUL" in lines[0], lines
        assert c.cmd("NOOP")[0] == 250                    # read to the real end
    assert s.messages() == []


def test_nul_in_data_normalised(srv):
    s = srv(files={"bare_newlines": "normalize"})
    with s.session() as c:
        open_data(c)
        c.send(b"Subject: nul\r\n\r\nbefore\r\n\x00.\r\nafter\x00 x\r\n.\r\n")
        assert c.read_reply()[0] == 250
    (msg,) = s.messages()
    assert b"\x00" not in msg
    assert msg.endswith(b"\nbefore\n.\nafter x\n")


def test_dot_unstuffing(srv):
    s = srv()
    with s.session() as c:
        open_data(c)
        c.send(b"Subject: dots\r\n\r\n..x\r\n...\r\n..\r\nx.\r\n.y\r\n\r\n..\r\n.\r\n")
        assert c.read_reply()[0] == 250
    (msg,) = s.messages()
    assert msg.endswith(b"Subject: dots\n\n.x\n..\n.\nx.\ny\n\n.\n")


def test_dot_stuffed_line_across_reads(srv):
    """The stuffed dot arrives in a separate write from the line before it."""
    s = srv()
    with s.session() as c:
        open_data(c)
        c.send(b"Subject: dots\r\n\r\nfirst\r")
        c.send(b"\n")
        c.send(b"..second\r\n")
        c.send(b".")
        c.send(b".third\r\n.")
        c.send(b"\r\n")
        assert c.read_reply()[0] == 250
    (msg,) = s.messages()
    assert msg.endswith(b"\n\nfirst\n.second\n.third\n")


def test_empty_message(srv):
    s = srv()
    with s.session() as c:
        open_data(c)
        c.send(b".\r\n")
        assert c.read_reply()[0] == 250
    (msg,) = s.messages()
    assert re.search(rb"\nReceived: from [^\n]*\n [^\n]*\nAuthentication-Results: [^\n]*\n\n$", msg), msg


@pytest.mark.parametrize("body, kept", [
    (b"hello world\r\nsecond line\r\n", b"hello world\nsecond line\n"),
    (b"Subject: s\r\nthis is not a header\r\nmore\r\n", b"this is not a header\nmore\n"),
    (b"From nobody Mon Jan 1\r\nSubject: x\r\n\r\nbody\r\n", b"From nobody Mon Jan 1\nSubject: x\n\nbody\n"),
    (b"Subject: only a header\r\n", b"Subject: only a header\n"),
])
def test_message_without_separator_is_kept_whole(srv, body, kept):
    s = srv()
    with s.session() as c:
        open_data(c)
        c.send(body + b".\r\n")
        assert c.read_reply()[0] == 250
    (msg,) = s.messages()
    assert kept in msg


def test_eof_in_data_delivers_nothing(srv, tmp_path):
    s = srv()
    c = s.session()
    open_data(c)
    c.send(b"Subject: cut\r\n\r\npartial body\r\n")
    c.sock.shutdown(1)
    assert c.closed()
    c.close()
    assert c.proc.returncode == 0
    assert s.messages() == []


def test_end_of_data_split_across_reads(srv):
    """CRLF.CRLF cut at every position, each part a separate read: still one end."""
    s = srv()
    end = b"\r\n.\r\n"
    with s.session() as c:
        c.ehlo()
        for cut in range(1, len(end)):
            c.cmd("MAIL FROM:<a@b.test>")
            c.cmd("RCPT TO:<u@example.test>")
            assert c.cmd("DATA")[0] == 354
            c.send(b"Subject: cut %d\r\n\r\nbody" % cut + end[:cut])
            time.sleep(0.1)
            c.send(end[cut:])
            code, lines = c.read_reply()
            assert code == 250, (cut, lines)
    msgs = s.messages()
    assert [m.endswith(b"Subject: cut %d\n\nbody\n" % cut) for cut, m in zip(range(1, 5), msgs)] == [True] * 4


@pytest.mark.parametrize("vector", [b"\n.\r\n", b"\r\n.\n", b"\r.\r"], ids=["LF.CRLF", "CRLF.LF", "CR.CR"])
def test_smuggling_vector_split_across_reads(srv, vector):
    s = srv()
    with s.session() as c:
        open_data(c)
        for i in range(len(vector)):
            c.send(b"Subject: s\r\n\r\nline1" + vector[:1] if i == 0 else vector[i:i + 1])
            time.sleep(0.05)
        c.send(SMUGGLED + b"\r\n.\r\n")
        code, lines = c.read_reply()
        assert code == 554 and lines[0].startswith("5.6.0")
        assert c.cmd("QUIT")[0] == 221
    assert s.messages() == []
    assert s.marks.read_text() == "mail\nrcpt\ndata\n"
