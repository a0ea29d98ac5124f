"""plugin_timeout's CallLimit (qpsmtpd_py/alarm.py): each plugin call gets the full limit
from its own start or last keepalive(), whatever calls ran before it, also in a forked
child; and the timer is not set and cancelled for every call (hooks run tens of times
per message)."""

import os
import time

import pytest

from qpsmtpd_py.alarm import ALARMS, CallLimit, CallTimeout

pytestmark = pytest.mark.no_services


def call(limit, seconds, keepalive_every=None):
    """A plugin call under `limit` that takes `seconds`; True when it was interrupted."""
    started = limit.start()
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(min(0.01, max(0.0, end - time.monotonic())))
            if keepalive_every is not None:
                limit.renew()
        return False
    except CallTimeout:
        return True
    finally:
        if started:
            limit.stop()


def test_a_silent_call_is_interrupted_at_the_limit():
    limit = CallLimit(0.2)
    t0 = time.monotonic()
    assert call(limit, 2.0)
    assert 0.19 <= time.monotonic() - t0 < 0.6


def test_a_call_gets_the_whole_limit_from_its_own_start():
    """The timer armed by an earlier call fires during a later one: that call is not cut
    short, it runs on until its own limit."""
    limit = CallLimit(0.3)
    assert not call(limit, 0.0)            # arms the timer for t=0.3
    time.sleep(0.2)
    assert not call(limit, 0.25)           # runs from 0.2 to 0.45: past the first deadline
    t0 = time.monotonic()
    assert call(limit, 2.0)                # and a silent call is still cut at 0.3 s
    assert 0.29 <= time.monotonic() - t0 < 0.7


def test_keepalive_lets_a_call_run_past_the_limit():
    limit = CallLimit(0.2)
    assert not call(limit, 0.6, keepalive_every=0.01)


def test_nested_calls_run_under_the_outer_limit():
    """A hook run inside a plugin call (a logging hook) neither restarts nor ends the
    outer call's limit."""
    limit = CallLimit(0.3)
    assert limit.start()
    t0 = time.monotonic()
    try:
        time.sleep(0.2)
        assert not call(limit, 0.0)        # nested: not limited on its own, no renewal
        with pytest.raises(CallTimeout):
            time.sleep(2.0)
    finally:
        limit.stop()
    assert time.monotonic() - t0 < 0.6


def test_timer_is_armed_once_for_many_calls(monkeypatch):
    armed = []
    real_add = ALARMS.add
    monkeypatch.setattr(ALARMS, "add", lambda *a: armed.append(a) or real_add(*a))
    limit = CallLimit(30)
    for _ in range(1000):
        assert not call(limit, 0.0)
    assert len(armed) == 1
    limit.token and ALARMS.cancel(limit.token)


def test_a_forked_child_is_limited_although_the_parent_armed_the_timer():
    limit = CallLimit(0.3)
    assert not call(limit, 0.0)            # the parent's timer is pending at fork
    pid = os.fork()
    if pid == 0:
        try:
            t0 = time.monotonic()
            interrupted = call(limit, 3.0)
            os._exit(0 if interrupted and time.monotonic() - t0 < 1.0 else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0, "the child's silent call was not interrupted within 1 s"
    ALARMS.cancel(limit.token)


class _Plugin:
    def __init__(self, name):
        self.plugin_name = name


def _sleeper(seconds, answer):
    def hook(transaction, *args):
        time.sleep(seconds)
        return answer
    return hook


def test_each_call_in_a_chain_gets_the_whole_limit_and_a_hung_one_is_cut():
    """HookRunner keeps one timer for a chain: three calls of 0.2 s under a 0.3 s limit
    all finish; a silent one is cut (4xx), and a deny hook that hangs after it is cut
    too instead of holding the worker, while the chain's answer stands."""
    from qpsmtpd_py.constants import DECLINED, DENY, DENYSOFT
    from qpsmtpd_py.hooks import HookRunner
    logged = []
    runner = HookRunner(lambda level, msg, **kw: logged.append(msg))
    runner.call_limit.seconds = 0.3
    for n in range(3):
        runner.add("mail", _Plugin(f"slow{n}"), _sleeper(0.2, DECLINED))
    t0 = time.monotonic()
    assert runner.run("mail", None)[0] == DECLINED
    assert time.monotonic() - t0 >= 0.6 and not logged
    runner.add("rcpt", _Plugin("silent"), _sleeper(5.0, DECLINED))
    runner.add("rcpt", _Plugin("refuser"), _sleeper(0.2, (DENY, "no")))
    runner.add("deny", _Plugin("hung_deny"), _sleeper(5.0, DECLINED))
    t0 = time.monotonic()
    code, messages, plugin = runner.run("rcpt", None)
    assert time.monotonic() - t0 < 2.0
    assert (code, plugin.plugin_name) == (DENYSOFT, "silent")
    assert any("silent in hook rcpt" in m for m in logged)
    logged.clear()
    runner.registry["rcpt"].pop(0)                        # now the refuser answers first
    t0 = time.monotonic()
    assert runner.run("rcpt", None)[:2] == (DENY, ["no"])
    assert time.monotonic() - t0 < 2.0
    assert any("deny hook of hung_deny failed" in m for m in logged)


def test_a_limit_turned_off_while_its_timer_is_pending_interrupts_nothing():
    """The chain starts its limit inline when the timer is pending; a timer that then
    fires for a limit set to 0 (no plugin_timeout) lapses instead of cutting the call."""
    from qpsmtpd_py.constants import DECLINED
    from qpsmtpd_py.hooks import HookRunner
    logged = []
    runner = HookRunner(lambda level, msg, **kw: logged.append(msg))
    runner.call_limit.seconds = 0.2
    runner.add("mail", _Plugin("quick"), _sleeper(0.0, DECLINED))
    assert runner.run("mail", None)[0] == DECLINED          # arms the timer
    assert runner.call_limit.token is not None
    runner.call_limit.seconds = 0
    runner.add("rcpt", _Plugin("slow"), _sleeper(0.5, DECLINED))
    assert runner.run("rcpt", None)[0] == DECLINED and not logged


def test_a_limit_turned_off_during_a_call_lets_the_call_finish():
    """The timer that fires for a limit set to 0 meanwhile lapses instead of cutting
    the call in progress."""
    limit = CallLimit(0.2)
    assert limit.start()
    try:
        limit.seconds = 0
        time.sleep(0.5)                  # CallTimeout here if the timer did not lapse
    finally:
        limit.stop()
