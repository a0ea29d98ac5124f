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
