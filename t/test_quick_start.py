"""The quick start (issue 14 item 7): scripts/run installs only when the package
metadata changed, takes a port, and the sample config in etc/ works from any working
directory (relative paths are taken relative to the config directory)."""

import os
import shutil
import subprocess
import sys

import pytest

from inproc import InProcessServer, message_wire
from qpsmtpd_py.config import Config

pytestmark = pytest.mark.no_services

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fake_venv(tmp_path):
    """A venv whose pip and qpsmtpd-prefork only record how they were called."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    os.symlink(sys.executable, venv / "bin" / "python")
    calls = tmp_path / "calls"
    for name in ("pip", "qpsmtpd-prefork"):
        script = venv / "bin" / name
        script.write_text(f'#!/bin/sh\necho "{name} $*" >> {calls}\n')
        script.chmod(0o755)
    return venv, calls


def run(venv, *args, env=None):
    environ = {**os.environ, "QPSMTPD_RUN_VENV": str(venv), **(env or {})}
    environ.pop("QPSMTPD_PORT", None) if "QPSMTPD_PORT" not in (env or {}) else None
    return subprocess.run(["bash", os.path.join(ROOT, "scripts", "run"), *args], cwd="/",
                          env=environ, capture_output=True, text=True, timeout=60)


def test_run_installs_once_then_only_starts(tmp_path):
    venv, calls = fake_venv(tmp_path)
    first = run(venv)
    assert first.returncode == 0, first.stderr
    assert "installing" in first.stderr
    second = run(venv, "2626", "--debug")
    third = run(venv, "--port", "2727", env={"QPSMTPD_PORT": "1"})
    assert "installing" not in second.stderr + third.stderr
    lines = calls.read_text().splitlines()
    assert [l.split()[0] for l in lines] == ["pip", "qpsmtpd-prefork", "qpsmtpd-prefork",
                                             "qpsmtpd-prefork"], lines
    assert "-e ." in lines[0]
    assert "--port 2525 " in lines[1] and f"--config {ROOT}/etc" in lines[1]
    assert "--port 2626 " in lines[2] and lines[2].endswith("--debug")
    assert "--port 2727 " in lines[3] and lines[3].count("--port") == 1


def test_run_refuses_a_bad_port(tmp_path):
    venv, calls = fake_venv(tmp_path)
    result = run(venv, "--port", "99999")
    assert result.returncode == 64 and "bad port" in result.stderr


def test_sample_config_delivers_from_the_root_directory(tmp_path, monkeypatch):
    """The sample's relative maildir and spool_dir are taken beside etc/, so a server
    started in / (as systemd does) delivers into <checkout>/maildir."""
    shutil.copytree(os.path.join(ROOT, "etc"), tmp_path / "etc")
    monkeypatch.chdir("/")

    class Sample:
        dir = str(tmp_path / "etc")

    srv = InProcessServer(Sample())
    assert srv.app.spool_dir == str(tmp_path / "var" / "spool")
    d = srv.talk("EHLO c", "MAIL FROM:<a@b.test>", "RCPT TO:<postmaster@localhost>", "DATA",
                 message_wire("Subject: hi\n\nhello"), "QUIT", remote_ip="127.0.0.1")
    assert d.codes == [220, 250, 250, 250, 354, 250, 221], d.pairs
    assert len(os.listdir(tmp_path / "maildir" / "new")) == 1
    assert Config([Sample.dir]).get("dns_servers") is not None
