import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from harness import ConfigDir  # noqa: E402


@pytest.fixture
def make_config(tmp_path):
    """make_config(plugins=[...], files={...}) -> ConfigDir in this test's tmp dir."""
    def make(plugins=("rcpt_ok", "queue/maildir {maildir}"), files=None, **kw):
        return ConfigDir(tmp_path, plugins=plugins, files=files, **kw)
    return make


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
