import functools
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from fakeclock import FakeClock  # noqa: E402
from harness import MAIL_PLUGINS, ConfigDir, mail_server_config  # noqa: E402
from inproc import InProcessServer  # noqa: E402


@pytest.fixture
def make_config(tmp_path):
    """make_config(plugins=[...], files={...}) -> ConfigDir in this test's tmp dir."""
    def make(plugins=MAIL_PLUGINS, files=None, **kw):
        return ConfigDir(tmp_path, plugins=plugins, files=files, **kw)
    return make


@pytest.fixture
def mail_config(make_config):
    """mail_config(*plugin_lines, files={...}, final=MAIL_PLUGINS) -> ConfigDir of a
    server that takes mail for example.test: the plugin lines, then `final`
    (rcpt_ok and a Maildir queue); config `plugin_dirs` finds the test plugins of
    t/plugins before ours; `rcpthosts` is example.test. `files` add to or replace
    these files; `plugins=[...]` gives the whole plugin list instead of lines + final.
    Calling it again in one test rewrites the same directory."""
    return functools.partial(mail_server_config, make_config)


@pytest.fixture
def clock():
    """A FakeClock: the code under test sleeps and expires by it; tests advance it."""
    return FakeClock()


@pytest.fixture
def session_server(mail_config, clock):
    """session_server(*plugin_lines, files={...}) -> InProcessServer (t/inproc.py):
    the mail_config server run inside the test process on the `clock` fixture, with
    the t_capture queue; `.talk(*script)` runs one session -> Dialogue."""
    def make(*lines, files=None, final=("rcpt_ok", "t_capture"), **kw):
        return InProcessServer(mail_config(*lines, files=files, final=final), clock=clock, **kw)
    return make


@pytest.fixture
def session_dialogue(session_server):
    """session_dialogue(script, plugins=(), files=None, **talk) -> Dialogue: one
    in-process session (greeting first in .replies; .messages from t_capture)."""
    def run(script, plugins=(), files=None, **talk):
        return session_server(*plugins, files=files).talk(*script, **talk)
    return run


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "services: needs the test services of t/services (DNS server, daemons) or "
        "a server process that looks names up; added to every test not marked no_services. "
        "`scripts/test --fast` runs -m 'not services'.")
    config.addinivalue_line(
        "markers", "no_services: runs without t/services and without DNS (in-process "
        "sessions, unit tests): part of the fast lane.")


def pytest_collection_modifyitems(config, items):
    """Everything needs the services unless it says otherwise: a new test that
    forgets the marker stays out of the fast lane instead of failing there."""
    for item in items:
        if item.get_closest_marker("no_services") is None:
            item.add_marker(pytest.mark.services)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI=true nothing may be skipped: every tool and service the tests need is
    installed and started by scripts/test, so a skip means something is missing."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") == "true" and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which must not happen: {reason}"
