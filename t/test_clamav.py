"""virus/clamav against the real clamscan and clamdscan (t/services' local EICAR
signatures): EICAR plain and as a base64 attachment, clean mail, add-header; a
scanner that hangs, dies of a signal or fails (t/stubs/scanners/misbehave): the
time-out is kept, the process group killed, the temporary file removed."""

import os
import time

import pytest

from harness import service_env
from scanhelp import (EICAR, STUBS, attachment_message, data_reply, header_of, message,
                      plugin_server, transaction)
from tools import require_tool
from qpsmtpd_py.config import ConfigError

MISBEHAVE = os.path.join(STUBS, "scanners", "misbehave")


@pytest.fixture
def clamav_server(session_server):
    return plugin_server(session_server, "virus/clamav")


@pytest.fixture(scope="module")
def clamd_conf():
    return service_env("QPT_CLAMD_CONF")


def spool_leftovers(srv):
    spool = os.path.join(srv.config.tmp, "spool")
    return [n for n in os.listdir(spool) if n.startswith("qpsmtpd-scan-")] if os.path.isdir(spool) else []


@pytest.mark.parametrize("text", [message(EICAR + "\n"), attachment_message(EICAR)],
                         ids=["plain", "base64-attachment"])
@pytest.mark.parametrize("program", ["clamscan", "clamdscan"])
def test_eicar_refused(clamav_server, clamd_conf, text, program):
    require_tool(program)
    srv = clamav_server(f"clamscan_path=/usr/bin/{program} clamd_conf={clamd_conf} action=reject")
    d = srv.talk(*transaction(text))
    code, reply = data_reply(d)
    assert code == 552 and reply.startswith("Virus Found: Local.Test.EICAR"), reply
    assert not reply.endswith(" ") and d.messages == []
    assert spool_leftovers(srv) == []


def test_default_action_adds_headers_and_clean_mail_is_marked(clamav_server, clamd_conf):
    srv = clamav_server(f"/usr/bin/clamscan clamd_conf={clamd_conf}")
    d = srv.talk(*transaction(attachment_message(EICAR)))
    assert data_reply(d)[0] == 250
    fields = header_of(d.messages[0])
    assert fields["x-virus-found"] == ["Yes"]
    assert fields["x-virus-details"][0].startswith("Local.Test.EICAR")
    d = srv.talk(*transaction(message("hello\n")))
    assert header_of(d.messages[0])["x-virus-checked"] == ["Checked by ClamAV on mx.example.test"]
    assert d.messages[0]["header"].endswith("X-Virus-Checked: Checked by ClamAV on mx.example.test")
    assert spool_leftovers(srv) == []


def test_max_size_skips(clamav_server, clamd_conf):
    d = clamav_server(f"clamd_conf={clamd_conf} action=reject max_size=100").talk(
        *transaction(message(EICAR + "\n")))
    assert data_reply(d)[0] == 250 and "skip, too large" in d.log


# -- a scanner that misbehaves -------------------------------------------------------------------
def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().split()[2] != "Z"


def test_hanging_scanner_is_killed_at_the_timeout(clamav_server, monkeypatch, tmp_path):
    log = tmp_path / "scanner.log"
    monkeypatch.setenv("QPT_STUB_LOG", str(log))
    monkeypatch.setenv("QPT_STUB_MODE", "hang")
    srv = clamav_server(f"clamscan_path={MISBEHAVE} action=reject timeout=1")
    start = time.monotonic()
    d = srv.talk(*transaction(message("hello\n")))
    elapsed = time.monotonic() - start
    assert data_reply(d) == (452, "Message denied temporarily")
    assert 0.9 <= elapsed < 2.5, elapsed
    first, child = log.read_text().splitlines()
    pid, _, *argv = first.split()
    # the argument list as documented; the message file was removed afterwards
    assert argv[:1] == ["--stdout"] and argv[-2] == "--no-summary"
    assert os.path.basename(argv[-1]).startswith("qpsmtpd-scan-") and not os.path.exists(argv[-1])
    # the scanner and its child (the whole process group) are gone
    time.sleep(0.1)
    assert not alive(int(pid)) and not alive(int(child.split()[1]))
    assert "no answer within 1s" in d.log


@pytest.mark.parametrize("mode, args, expect", [
    ("kill", "", 452), ("exit:2", "", 452), ("kill", "declined_on_fail", 250),
    ("exit:2", "failure=accept", 250)])
def test_failing_scanner_policy(clamav_server, monkeypatch, mode, args, expect):
    monkeypatch.setenv("QPT_STUB_MODE", mode)
    d = clamav_server(f"{MISBEHAVE} action=reject {args}").talk(*transaction(message("hi\n")))
    assert data_reply(d)[0] == expect
    if expect == 250:
        [tag] = header_of(d.messages[0])["x-scan-failed"]
        assert tag.startswith("virus/clamav: misbehave")
        assert ("killed by signal 9" if mode == "kill" else "exit code 2: scanner error") in tag


@pytest.mark.no_services
def test_arguments(clamav_server):
    with pytest.raises(ConfigError, match="action 'drop'"):
        clamav_server("action=drop")
    with pytest.raises(ConfigError, match="unknown argument|unexpected argument"):
        clamav_server("/usr/bin/clamscan frobnicate=1")
    with pytest.raises(ConfigError, match="tmp_dir /nonexistent does not exist"):
        clamav_server("tmp_dir=/nonexistent")
