"""tarpit: measured delays after errors, growth, the caps, immune clients."""

import os
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PLUGIN_DIRS = [os.path.join(HERE, "plugins"), os.path.join(os.path.dirname(HERE), "plugins")]


def server(make_config, args, extra=(), timeout=None):
    files = {"rcpthosts": "example.test", "plugin_dirs": PLUGIN_DIRS, "loglevel": "6"}
    if timeout:
        files["timeout"] = str(timeout)
    return make_config(plugins=list(extra) + ["rcpt_ok", f"tarpit {args}",
                                              "queue/maildir {maildir}"], files=files)


def timed(c, line):
    started = time.monotonic()
    code, _ = c.cmd(line)
    return code, time.monotonic() - started


FAST = 0.25      # an answer without a delay, with room for a loaded test machine


def test_delays_grow_after_errors_and_stop_at_the_total_cap(make_config):
    srv = server(make_config, "after 1 delay 0.4 max_delay 1.6 max_total 2.0")
    with srv.session() as c:
        c.ehlo()
        assert timed(c, "MAIL FROM:<a@sender.test>")[0] == 250
        code, took = timed(c, "RCPT TO:<x@elsewhere.test>")       # error 1, not delayed
        assert code == 550 and took < FAST
        code, took = timed(c, "NOOP")                              # 0.4
        assert code == 250 and 0.38 <= took < 0.8
        assert timed(c, "RCPT TO:<y@elsewhere.test>")[0] == 550    # 0.4 again, error 2
        code, took = timed(c, "NOOP")                              # 0.8: total 1.6
        assert 0.78 <= took < 1.3
        code, took = timed(c, "VRFY someone")                      # 0.8 > budget: 0.4
        assert code == 252 and 0.38 <= took < 0.75
        code, took = timed(c, "NOOP")                              # budget used up
        assert code == 250 and took < FAST
        code, took = timed(c, "RCPT TO:<u@example.test>")
        assert code == 250 and took < FAST
    assert "tarpit, 2 errors: waiting 0.8s" in c.stderr


def test_max_delay_and_after(make_config):
    srv = server(make_config, "after 2 delay 0.3 max_delay 0.35 max_total 10")
    with srv.session() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@sender.test>")
        c.cmd("RCPT TO:<x@elsewhere.test>")                        # error 1: free
        assert timed(c, "NOOP")[1] < FAST
        c.cmd("RCPT TO:<x@elsewhere.test>")                        # error 2
        assert 0.28 <= timed(c, "NOOP")[1] < 0.55                  # 0.3
        c.cmd("RCPT TO:<x@elsewhere.test>")                        # error 3: 0.6 -> 0.35
        assert 0.33 <= timed(c, "NOOP")[1] < 0.58


def test_unrecognized_commands_count_and_are_delayed(make_config):
    srv = server(make_config, "delay 0.3 max_delay 1 max_total 5")
    with srv.session() as c:
        assert timed(c, "FOO")[0] == 500
        code, took = timed(c, "BAR")                               # delayed 0.3, error 2
        assert code == 500 and took >= 0.28
        assert timed(c, "HELO x.example.org")[1] >= 0.58           # 0.6
        started = time.monotonic()
        assert c.cmd("QUIT")[0] == 221                             # never delayed
        assert time.monotonic() - started < FAST


def test_the_total_never_exceeds_half_the_session_timeout(make_config):
    srv = server(make_config, "delay 5 max_delay 5 max_total 60", timeout=1)
    with srv.session() as c:
        c.cmd("FOO")
        code, took = timed(c, "NOOP")                              # 5 capped at 0.5
        assert code == 250 and 0.45 <= took < 1.0
        assert timed(c, "NOOP")[1] < FAST


def test_relay_clients_are_not_delayed(make_config):
    srv = server(make_config, "delay 1", extra=["relay"])
    with srv.session(env={"RELAYCLIENT": ""}) as c:
        c.cmd("FOO")
        c.cmd("FOO")
        assert timed(c, "NOOP")[1] < 0.5


@pytest.mark.parametrize("args, reason", [("delay", "pairs"), ("delay soon", "expected a number"),
                                          ("after 0", "integer >= 1"), ("speed 3", "unknown")])
def test_bad_arguments_stop_start_up(make_config, args, reason):
    c = server(make_config, args).session(read_greeting=False)
    assert c.closed()
    assert reason in c.stderr and c.proc.returncode == 78
