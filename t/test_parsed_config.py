"""Plugin.parsed_config / parsed_file: a parsed config file is cached per process
and parsed again only after the file changed (docs/plugin-api.md)."""

import os
import time

import pytest

from qpsmtpd_py import config as config_module
from qpsmtpd_py.api import Plugin
from qpsmtpd_py.app import Qpsmtpd
from qpsmtpd_py.config import Config
from harness import PLUGIN_DIRS
from serverproc import Server



class Counting:
    """A parser that records every run."""

    def __init__(self):
        self.runs = []

    def __call__(self, lines):
        self.runs.append([str(line) for line in lines])
        return {str(line).split()[0]: line.origin for line in lines}


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    # every lookup stats the file (production: once a second), so a change is seen at once
    monkeypatch.setattr(config_module, "RECHECK_SECONDS", 0)
    app = Qpsmtpd(config=Config([str(tmp_path)]))
    return Plugin(app, "t")


def write(path, text):
    with open(path, "w") as fh:
        fh.write(text)


@pytest.mark.no_services
def test_parser_runs_once_while_the_file_is_unchanged(plugin, tmp_path):
    write(tmp_path / "things", "# comment\nalpha 1\nbeta\n")
    parser = Counting()
    first = plugin.parsed_config("things", parser)
    assert first == {"alpha": f"{tmp_path}/things:2", "beta": f"{tmp_path}/things:3"}
    for _ in range(5):
        assert plugin.parsed_config("things", parser) is first
    assert parser.runs == [["alpha 1", "beta"]]


@pytest.mark.no_services
def test_a_changed_file_is_parsed_again(plugin, tmp_path):
    write(tmp_path / "things", "alpha\n")
    parser = Counting()
    assert list(plugin.parsed_config("things", parser)) == ["alpha"]
    write(tmp_path / "things", "alpha\ngamma\n")
    assert list(plugin.parsed_config("things", parser)) == ["alpha", "gamma"]
    os.remove(tmp_path / "things")
    assert plugin.parsed_config("things", parser) == {}
    assert len(parser.runs) == 3


@pytest.mark.no_services
def test_moved_lines_are_parsed_again_for_their_new_line_numbers(plugin, tmp_path):
    write(tmp_path / "things", "alpha\n")
    parser = Counting()
    plugin.parsed_config("things", parser)
    write(tmp_path / "things", "# a comment moves alpha to line 2\nalpha\n")
    assert plugin.parsed_config("things", parser) == {"alpha": f"{tmp_path}/things:2"}
    assert len(parser.runs) == 2


@pytest.mark.no_services
def test_include_files_are_reread_but_not_reparsed(plugin, tmp_path):
    """A file with $include is re-read at every recheck; same lines, no new parse."""
    write(tmp_path / "part", "alpha\n")
    write(tmp_path / "things", f"$include {tmp_path}/part\n")
    parser = Counting()
    first = plugin.parsed_config("things", parser)
    assert plugin.parsed_config("things", parser) is first
    write(tmp_path / "part", "beta\n")
    assert list(plugin.parsed_config("things", parser)) == ["beta"]
    assert len(parser.runs) == 2


@pytest.mark.no_services
def test_each_name_and_each_plugin_has_its_own_cache(plugin, tmp_path):
    write(tmp_path / "one", "alpha\n")
    write(tmp_path / "two", "beta\n")
    parser = Counting()
    assert list(plugin.parsed_config("one", parser)) == ["alpha"]
    assert list(plugin.parsed_config("two", parser)) == ["beta"]
    other = Plugin(plugin.app, "other")
    assert list(other.parsed_config("one", parser)) == ["alpha"]
    assert len(parser.runs) == 3
    # another parser for the same name is run, not handed the first one's result
    assert plugin.parsed_config("one", lambda lines: "other parse") == "other parse"


@pytest.mark.no_services
def test_parsed_file_rereads_a_changed_file(plugin, tmp_path):
    path = str(tmp_path / "members")
    write(path, "a@example.test\n")
    runs = []

    def members(text):
        runs.append(text)
        return set(text.split())

    assert plugin.parsed_file(path, members) == {"a@example.test"}
    assert plugin.parsed_file(path, members) == {"a@example.test"}
    write(path, "a@example.test\nb@example.test\n")
    assert plugin.parsed_file(path, members) == {"a@example.test", "b@example.test"}
    assert len(runs) == 2
    os.remove(path)
    with pytest.raises(OSError):
        plugin.parsed_file(path, members)


def test_a_worker_sees_the_new_parse_in_its_next_session(make_config):
    """qpsmtpd-prefork with one long-lived worker: unchanged file, no new parse;
    edited file, the next session gets the new parse without a restart or HUP."""
    srv = make_config(plugins=["t_parsed", "rcpt_ok"],
                      files={"plugin_dirs": PLUGIN_DIRS, "t_parsed": "alpha\nbeta"})
    with Server("qpsmtpd-prefork", srv, "--children", "1") as server:
        replies = []
        for _ in range(3):
            with server.client() as c:
                replies.append(c.cmd("HELO client.test"))
        assert replies == [(550, "parsed 1 times: ALPHA BETA")] * 3
        srv.write("t_parsed", "gamma")
        time.sleep(1.1)                          # config files are rechecked once a second
        with server.client() as c:
            assert c.cmd("HELO client.test") == (550, "parsed 2 times: GAMMA")
