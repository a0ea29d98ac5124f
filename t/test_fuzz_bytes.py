"""Arbitrary bytes in every command word and parameter never crash a session
(issue 16 point 5): each line gets one well-formed reply, the session stays in
sync, and the server log holds no traceback. Runs against qpsmtpd-prefork, whose
process title shows the command word (setproctitle once raised on a stray byte)."""

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serverproc import Server

REPLY = re.compile(rb"^(\d{3})([ -])(.*)\r\n$")
WORDS = [b"HELO", b"EHLO", b"MAIL FROM:", b"RCPT TO:", b"VRFY", b"NOOP", b"HELP", b"RSET",
         b"AUTH", b"STARTTLS", b"MAIL FROM:<a@b.test> SIZE=", b"MAIL FROM:<a@b.test> BODY="]
# any bytes but the line end and NUL (NUL has its own reply, tested elsewhere)
junk = st.binary(min_size=0, max_size=40).map(
    lambda b: b.replace(b"\r", b"").replace(b"\n", b"").replace(b"\0", b""))
line = st.one_of(junk, st.tuples(st.sampled_from(WORDS), junk).map(b"".join),
                 st.tuples(junk, st.sampled_from([b" FROM:<a@b.test>", b" x"])).map(b"".join))


def test_random_bytes_in_commands(make_config):
    srv = make_config(files={"rcpthosts": "example.test", "databytes": "100000"})
    with Server("qpsmtpd-prefork", srv, "--children", "2") as server:
        session = {}

        def fresh():
            session["c"] = server.client()
            session["c"].ehlo()

        fresh()

        @settings(max_examples=300, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(st.lists(line, min_size=1, max_size=5))
        def run(lines):
            for raw in lines:
                client = session["c"]
                client.send(raw + b"\r\n")
                code, text = client.read_reply()
                assert all(REPLY.match(r) for r in client.raw), (raw, client.raw)
                if code == 421:             # the error limit: a clean hang-up, then a new session
                    assert "too many errors" in text[-1], (raw, client.raw)
                    assert client.closed()
                    fresh()
                    continue
                assert 200 <= code < 600 and code != 221, (raw, client.raw)
            assert session["c"].cmd("RSET")[0] == 250       # still in sync

        run()
        assert session["c"].cmd("QUIT")[0] == 221
    assert "Traceback" not in server.log, server.log[-3000:]
