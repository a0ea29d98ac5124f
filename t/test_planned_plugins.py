"""README says greylisting, karma and connection_shaper are planned, not shipped: a config
that loads one does not start, naming the line. When one of them ships, this test fails:
update README.md ("Shared state ...") and docs/store.md with it."""

import pytest


@pytest.mark.parametrize("name", ["greylisting", "karma", "connection_shaper"])
def test_planned_plugins_are_not_shipped_yet(make_config, name):
    srv = make_config(plugins=[name, "rcpt_ok"])
    c = srv.session(read_greeting=False)
    assert c.closed()
    err = c.stderr
    assert c.proc.returncode == 78
    assert "config/plugins:1" in err and f"Plugin {name} not found" in err, err
