"""Session limits (issue 16 point 1), in-process on the fake clock: a command
line must arrive whole within the time-out (bytes trickling in do not stretch
it), DATA must keep min_data_rate, junk commands and unknown commands are
limited, sessions have a maximum length, and stress mode tightens all of it."""

import re

import pytest

from inproc import Pause

pytestmark = pytest.mark.no_services

MAIL = ("MAIL FROM:<a@b.test>", "RCPT TO:<u@example.test>", "DATA")


@pytest.fixture
def session_server(session_server):
    """The conftest fixture with loglevel 6 (the limits log at LOGINFO)."""
    def make(files=None):
        return session_server(files={"loglevel": "6", **(files or {})})
    return make


def drip(text, every):
    """`text` one byte at a time, `every` seconds apart."""
    out = []
    for byte in text.encode():
        out += [Pause(every), bytes([byte])]
    return out


def test_a_dripped_command_line_times_out_at_the_timeout(session_server):
    srv = session_server(files={"timeout": "30"})
    d = srv.talk("EHLO client.test", *drip("NOOP\r\n", 5))
    assert d.codes == [220, 250, 421]
    assert re.match(r"4\.4\.2 .*timeout", d.replies[-1].text)
    assert d.replies[-1].at - d.replies[1].at == 30       # not re-armed by each byte
    assert "sent no complete command within 30 seconds" in d.log


def test_commands_in_one_piece_with_pauses_are_fine(session_server):
    srv = session_server(files={"timeout": "30"})
    d = srv.talk("EHLO client.test", Pause(29), "NOOP", Pause(29), "QUIT")
    assert d.codes == [220, 250, 250, 221]


def test_data_below_min_data_rate_is_cut_after_the_grace(session_server):
    srv = session_server(files={"timeout": "60", "min_data_rate": "100"})
    body = [Pause(2), b"x" * 10] * 40                     # 5 bytes/s, each read well in time
    d = srv.talk("EHLO client.test", *MAIL, b"Subject: slow\r\n\r\n", *body, b"\r\n.\r\n")
    assert d.codes[-2:] == [354, 421]
    assert d.messages == []
    assert "sent less than 100 bytes/s of message data" in d.log
    assert d.replies[-1].at - d.replies[-2].at == pytest.approx(30, abs=2.1)   # DATA_GRACE


def test_data_at_min_data_rate_is_accepted(session_server):
    srv = session_server(files={"timeout": "60", "min_data_rate": "100"})
    body = [Pause(1), b"x" * 200 + b"\r\n"] * 60           # 200 bytes/s for a minute
    d = srv.talk("EHLO client.test", *MAIL, b"Subject: steady\r\n\r\n", *body, b".\r\n", "QUIT")
    assert d.codes[-3:] == [354, 250, 221]


def test_junk_commands_past_the_limit_count_as_errors(session_server):
    srv = session_server(files={"junk_command_limit": "3", "hard_error_limit": "2"})
    d = srv.talk("EHLO client.test", *["NOOP"] * 5, "RSET", "QUIT")
    assert d.codes == [220, 250, 250, 250, 250, 250, 250, 421]
    assert d.replies[-1].text.startswith("4.7.0 ") and "too many errors" in d.replies[-1].text
    assert "too many errors (3: junk commands" in d.log


def test_unknown_commands_end_the_session_past_hard_error_limit(session_server):
    srv = session_server(files={"hard_error_limit": "2"})
    d = srv.talk("EHLO client.test", "FOO", "BAR", "BAZ", "QUIT")
    assert d.codes == [220, 250, 500, 500, 421]


def test_a_delivered_message_starts_the_counts_again(session_server):
    srv = session_server(files={"junk_command_limit": "1", "hard_error_limit": "1"})
    message = (*MAIL, "Subject: x", "", "hi", ".")
    d = srv.talk("EHLO client.test", "NOOP", "NOOP", *message, "NOOP", "NOOP", "QUIT")
    assert d.codes == [220, 250, 250, 250, 250, 250, 354, 250, 250, 250, 221]


def test_max_session_time(session_server):
    srv = session_server(files={"max_session_time": "100"})
    d = srv.talk("EHLO client.test", *[x for _ in range(5) for x in (Pause(30), "NOOP")])
    assert d.codes == [220, 250, 250, 250, 250, 421]
    assert d.replies[-1].at - d.replies[0].at == pytest.approx(100)
    assert "session lasted too long (max_session_time)" in d.log


def stressed(session_server, **files):
    srv = session_server(files=files)
    srv.app.stress = lambda: srv.stress
    srv.stress = True
    return srv


def test_stress_shortens_the_timeout(session_server):
    srv = stressed(session_server)
    d = srv.talk("EHLO client.test", Pause(60), "QUIT")
    assert d.codes == [220, 250, 421]
    assert d.replies[-1].at - d.replies[1].at == pytest.approx(10, abs=1)    # stress_timeout
    assert "(stress)" in d.log


def test_stress_starting_mid_wait_cuts_a_waiting_client(session_server):
    srv = session_server()
    srv.app.stress = lambda: srv.clock.monotonic() >= start + 100          # after 100 s
    start = srv.clock.monotonic()
    d = srv.talk("EHLO client.test", Pause(1000), "QUIT")
    assert d.codes == [220, 250, 421]
    assert d.replies[-1].at - d.replies[1].at == pytest.approx(100, abs=1.1)


def test_stress_drops_a_dripper_and_lowers_the_limits(session_server):
    srv = stressed(session_server)
    d = srv.talk("EHLO client.test", *drip("NOOP\r\n", 1))
    assert d.codes == [220, 250, 421]
    assert "took over 3 seconds for one command line (stress)" in d.log
    d = srv.talk("EHLO client.test", "NOOP", "NOOP", "NOOP", "QUIT")
    assert d.codes == [220, 250, 250, 250, 421]            # junk limit 1, error limit 1
