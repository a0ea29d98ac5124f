"""tarpit: delays after errors, growth, the caps, immune clients. In-process
sessions on a fake clock (t/inproc.py): each reply's delay is read off the clock,
exactly, and nothing sleeps; one real server checks that the delay is real."""

import time

import pytest

FILES = {"loglevel": "6"}


def delays(d):
    """Seconds between each reply and the one before it (0 for the greeting)."""
    times = [r.at for r in d.replies]
    return [round(b - a, 6) for a, b in zip([times[0]] + times, times)]


@pytest.mark.no_services
def test_delays_grow_after_errors_and_stop_at_the_total_cap(session_server, clock):
    srv = session_server("tarpit after 1 delay 0.4 max_delay 1.6 max_total 2.0", files=FILES)
    d = srv.talk("EHLO client.test", "MAIL FROM:<a@sender.test>",
                 "RCPT TO:<x@elsewhere.test>",        # error 1, not delayed
                 "NOOP",                              # 0.4
                 "RCPT TO:<y@elsewhere.test>",        # 0.4 again, error 2
                 "NOOP",                              # 0.8: total 1.6
                 "VRFY someone",                      # 0.8 > what is left of 2.0: 0.4
                 "NOOP",                              # the budget is used up
                 "RCPT TO:<u@example.test>", "QUIT")
    assert d.codes == [220, 250, 250, 550, 250, 550, 250, 252, 250, 250, 221]
    assert delays(d) == [0, 0, 0, 0, 0.4, 0.4, 0.8, 0.4, 0, 0, 0]
    assert clock.sleeps == pytest.approx([0.4, 0.4, 0.8, 0.4])
    assert "tarpit, 2 errors: waiting 0.8s" in d.log
    assert d.connection.notes["tarpit_errors"] == 2
    assert d.connection.notes["tarpit_total"] == pytest.approx(2.0)


@pytest.mark.no_services
def test_max_delay_and_after(session_server, clock):
    srv = session_server("tarpit after 2 delay 0.3 max_delay 0.35 max_total 10", files=FILES)
    d = srv.talk("EHLO client.test", "MAIL FROM:<a@sender.test>",
                 "RCPT TO:<x@elsewhere.test>", "NOOP",     # error 1: free
                 "RCPT TO:<x@elsewhere.test>", "NOOP",     # error 2: 0.3
                 "RCPT TO:<x@elsewhere.test>", "NOOP")     # 0.3, error 3: 0.6 capped at 0.35
    assert delays(d)[3:] == [0, 0, 0, 0.3, 0.3, 0.35]
    assert clock.sleeps == pytest.approx([0.3, 0.3, 0.35])


@pytest.mark.no_services
def test_unrecognized_commands_count_and_are_delayed(session_server, clock):
    srv = session_server("tarpit delay 0.3 max_delay 1 max_total 5", files=FILES)
    d = srv.talk("FOO", "BAR", "HELO x.example.org", "QUIT")
    assert d.codes == [220, 500, 500, 250, 221]
    assert delays(d) == [0, 0, 0.3, 0.6, 0]                # QUIT is never delayed
    assert d.connection.notes["tarpit_errors"] == 2


@pytest.mark.no_services
def test_rset_is_never_delayed(session_server, clock):
    srv = session_server("tarpit delay 1", files=FILES)
    d = srv.talk("FOO", "RSET", "RSET", "NOOP")
    assert delays(d) == [0, 0, 0, 0, 1]


@pytest.mark.no_services
def test_the_total_never_exceeds_half_the_session_timeout(session_server, clock):
    srv = session_server("tarpit delay 5 max_delay 5 max_total 60", files={**FILES, "timeout": "1"})
    d = srv.talk("FOO", "NOOP", "NOOP", "QUIT")
    assert delays(d) == [0, 0, 0.5, 0, 0]                  # 5 capped at 0.5
    assert d.codes[-1] == 221                               # the session did not time out


@pytest.mark.no_services
@pytest.mark.parametrize("how", ["RELAYCLIENT", "whitelisthost"])
def test_immune_clients_are_not_delayed(session_server, clock, monkeypatch, how):
    if how == "RELAYCLIENT":
        monkeypatch.setenv("RELAYCLIENT", "")
        srv = session_server("relay", "tarpit delay 1", files=FILES)
    else:
        srv = session_server("whitelist", "tarpit delay 1",
                             files={**FILES, "whitelisthosts": "192.0.2.10"})
    d = srv.talk("FOO", "FOO", "NOOP", "QUIT")
    assert d.codes == [220, 500, 500, 250, 221]
    assert clock.sleeps == []


def test_a_real_server_really_waits(mail_config):
    """The production clock: the delay is wall time in a real server process."""
    srv = mail_config("tarpit delay 0.3 max_delay 1 max_total 5", files=FILES)
    with srv.session() as c:
        assert c.cmd("FOO")[0] == 500
        started = time.monotonic()
        assert c.cmd("BAR")[0] == 500
        assert time.monotonic() - started >= 0.29


def server(mail_config, args):
    return mail_config(f"tarpit {args}", files=FILES)


@pytest.mark.parametrize("args, reason", [("delay", "pairs"), ("delay soon", "expected a number"),
                                          ("after 0", "integer >= 1"), ("speed 3", "unknown")])
def test_bad_arguments_stop_start_up(mail_config, args, reason):
    c = server(mail_config, args).session(read_greeting=False)
    assert c.closed()
    assert reason in c.stderr and c.proc.returncode == 78
