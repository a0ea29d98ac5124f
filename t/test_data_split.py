"""However the client's bytes are cut into reads, the server answers the same and
stores the same message: DATA's CRLF.CRLF split at every byte position, the
envelope commands cut anywhere, and (hypothesis) arbitrary bodies of dots, bare
CR/LF, NUL and long lines cut into arbitrary pieces, under each DATA policy.
In-process sessions over a scripted channel (t/inproc.py)."""

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inproc import message_wire

pytestmark = pytest.mark.no_services

ENVELOPE = (b"EHLO client.test\r\nMAIL FROM:<a@b.test> SIZE=100 BODY=8BITMIME\r\n"
            b"RCPT TO:<u@example.test>\r\nRCPT TO:<Postmaster>\r\nDATA\r\n")
SECOND = b"MAIL FROM:<>\r\nRCPT TO:<v@example.test>\r\nDATA\r\nSubject: 2\r\n\r\nsecond\r\n.\r\n"
BODY = message_wire("Subject: split\nX-Folded: a\n  b\n\n.leading dot\n..two dots\nlast")
WIRE = ENVELOPE + BODY + SECOND + b"QUIT\r\n"

_RECEIVED = re.compile(r"^Received:.*\n(?:[ \t].*\n)*", re.M)


def outcome(server, chunks):
    """What the client sees and what is stored; the Received date (wall clock) left out."""
    d = server.talk(*chunks)
    stored = [(m["sender"], m["recipients"], _RECEIVED.sub("", m["header"] + "\n"), m["body"])
              for m in d.messages]
    return d.pairs, stored, d.unread


def cut(data, positions):
    """data cut at the given positions into reads (empty pieces dropped)."""
    points = [0, *sorted(set(p for p in positions if 0 < p < len(data))), len(data)]
    return [data[a:b] for a, b in zip(points, points[1:])]


@pytest.fixture
def server(session_server):
    return session_server()


def test_one_read_is_the_reference(server):
    pairs, stored, unread = outcome(server, [WIRE])
    assert [code for code, _ in pairs] == [220, 250, 250, 250, 250, 354, 250, 250, 250, 354, 250, 221]
    (s1, r1, h1, b1), (s2, r2, h2, b2) = stored
    assert (s1, r1) == ("<a@b.test>", ["<u@example.test>", "<postmaster>"])
    assert h1 == "Authentication-Results: mx.example.test; auth=none\nSubject: split\nX-Folded: a\n  b\n"
    assert b1 == b".leading dot\n..two dots\nlast\n"                # dot-stuffing undone
    assert (s2, r2, b2) == ("<>", ["<v@example.test>"], b"second\n")
    assert unread == b""


def test_every_single_cut(server):
    """Two reads, cut at every byte of the dialogue (envelope lines, CRLF.CRLF,
    the pipelined second transaction)."""
    reference = outcome(server, [WIRE])
    for i in range(1, len(WIRE)):
        assert outcome(server, cut(WIRE, [i])) == reference, f"cut at {i}: {WIRE[:i][-12:]!r}"


def test_every_pair_of_cuts_around_the_terminator(server):
    end = len(ENVELOPE) + len(BODY)
    reference = outcome(server, [WIRE])
    for i in range(end - 9, end + 3):
        for j in range(i + 1, end + 4):
            assert outcome(server, cut(WIRE, [i, j])) == reference, (i, j)


def test_one_byte_per_read(server):
    assert outcome(server, [WIRE[i:i + 1] for i in range(len(WIRE))]) == outcome(server, [WIRE])


def test_the_refusal_reason_does_not_depend_on_the_reads(server):
    """Found by the property test below: a NUL in one read and a bare CR in the
    next were refused for the NUL, the same bytes in one read for the bare CR."""
    wire = ENVELOPE + b"\x00\r\n\r\r\n.\r\nQUIT\r\n"
    reference = outcome(server, [wire])
    assert "bare CR or LF" in reference[0][-2][1]
    for i in range(len(ENVELOPE), len(wire)):
        assert outcome(server, cut(wire, [i])) == reference, i


def test_a_long_line_cut_anywhere_near_the_piece_size(server):
    """A line longer than the reader's piece size is passed on in pieces; where the
    reads end must not matter, nor a CR at a piece's end."""
    from qpsmtpd_py import data_reader
    piece = data_reader.PIECE
    line = b"x" * (piece + 10) + b"\r" + b"y" * 5
    wire = ENVELOPE + b"Subject: long\r\n\r\n" + line + b"\r\n.\r\nQUIT\r\n"
    base = len(ENVELOPE) + len(b"Subject: long\r\n\r\n")
    reference = outcome(server, [wire])
    assert [c for c, _ in reference[0]][-2:] == [554, 221]          # the bare CR refuses it
    for i in (piece - 1, piece, piece + 1, piece + 2, piece + 10, piece + 11):
        assert outcome(server, cut(wire, [base + i])) == reference, i


# -- hypothesis ------------------------------------------------------------------------------
FRAGMENTS = [b"a", b"bc d", b".", b"..", b"\r\n", b"\r\n", b"\r\n.", b"\r", b"\n", b"\x00",
             b"\t", b"Subject: x", b"X-Y: z", b" folded", b":", b"\xc3\xa9", b"x" * 50,
             b"\r\n.\r\n"]
BODIES = st.lists(st.sampled_from(FRAGMENTS), max_size=40).map(b"".join)

POLICIES = {
    "default": {},
    "normalize": {"bare_newlines": "normalize"},
    "line_limit": {"data_line_limit": "40"},
    "databytes": {"databytes": "120"},
}


@pytest.mark.parametrize("policy", POLICIES)
def test_any_cut_of_any_body_gives_the_same_result(session_server, monkeypatch, policy):
    from qpsmtpd_py import data_reader
    monkeypatch.setattr(data_reader, "PIECE", 64)     # reach the long-line path with short data
    server = session_server(files=POLICIES[policy])

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(body=BODIES, cuts=st.lists(st.integers(min_value=1, max_value=400), max_size=8))
    def check(body, cuts):
        wire = ENVELOPE + body + b"\r\n.\r\n" + SECOND + b"QUIT\r\n"
        assert outcome(server, cut(wire, cuts)) == outcome(server, [wire])

    check()


ADDRESSES = st.sampled_from(["<a@b.test>", "<>", "<\"x y\"@b.test>", "<a@[192.0.2.1]>",
                             "<postmaster>", "a@b.test", "<a@b.test", "<@relay.test:a@b.test>",
                             "<ü@b.test>", "< a@b.test>", "<a@b.test> X=1", "<a@b.test> SIZE=x"])


def test_any_cut_of_any_envelope_gives_the_same_replies(server):
    @settings(max_examples=150, deadline=None)
    @given(sender=ADDRESSES, rcpts=st.lists(ADDRESSES, max_size=3),
           cuts=st.lists(st.integers(min_value=1, max_value=200), max_size=6),
           ehlo=st.booleans())
    def check(sender, rcpts, cuts, ehlo):
        lines = ["EHLO c.test" if ehlo else "HELO c.test", f"MAIL FROM:{sender}",
                 *(f"RCPT TO:{r}" for r in rcpts), "RSET", "QUIT"]
        wire = "".join(line + "\r\n" for line in lines).encode()
        assert outcome(server, cut(wire, cuts)) == outcome(server, [wire])

    check()
