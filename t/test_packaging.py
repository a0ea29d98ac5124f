"""A non-editable install (a built wheel, as a distribution would ship it) finds its
plugins without the checkout: plugins/ is installed as qpsmtpd_py/_plugins."""

import importlib.util
import os
import shutil
import socket
import subprocess
import sys

import pytest

from harness import Client, ConfigDir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """`pip install --no-deps --target SITE` of a copy of the source tree (so the
    build never writes into the shared checkout)."""
    base = tmp_path_factory.mktemp("packaging")
    src = base / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".venv", ".venv-min", ".git", "build", "dist", "*.egg-info", "__pycache__", ".hypothesis",
        ".pytest_cache", "t", "bench", "*.pyc"))
    target = base / "site"
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "--quiet",
           "--target", str(target)]
    if importlib.util.find_spec("setuptools") and importlib.util.find_spec("wheel"):
        # everything needed is here: build offline, without a temporary build env
        cmd += ["--no-build-isolation", "--no-index"]
    proc = subprocess.run(cmd + [str(src)], capture_output=True, text=True, timeout=300,
                          cwd=str(base))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return target


def run_env(site, config_dir):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TCP", "RELAYCLIENT", "PYTHON"))}
    env["PYTHONPATH"] = str(site)
    env["PYTHONNOUSERSITE"] = "1"
    env["QPSMTPD_CONFIG"] = config_dir
    env["TCPREMOTEIP"] = "192.0.2.20"
    return env


def test_plugins_are_installed_as_package_data(site):
    plugins = site / "qpsmtpd_py" / "_plugins"
    for name in ("rcpt_ok.py", "relay.py", "queue/maildir.py"):
        assert (plugins / name).is_file(), name
    assert not (site / "plugins").exists()


def test_installed_copy_loads_its_own_plugins(site, tmp_path):
    srv = ConfigDir(tmp_path / "srv", plugins=["rcpt_ok", "queue/maildir {maildir}"])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = ("import qpsmtpd_py, qpsmtpd_py.plugin as p\n"
            "from qpsmtpd_py.server.common import build_app\n"
            "app = build_app()\n"
            "print(qpsmtpd_py.__file__)\n"
            "print(repr(p.default_plugin_dirs()))\n"
            "print(sorted(pl.plugin_name for pl in app.plugins))\n")
    proc = subprocess.run([sys.executable, "-c", code], env=run_env(site, srv.dir), cwd=str(elsewhere),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    module_file, dirs, names = proc.stdout.splitlines()
    assert module_file == str(site / "qpsmtpd_py" / "__init__.py")
    assert eval(dirs) == [str(site / "qpsmtpd_py" / "_plugins")]
    assert names == "['queue/maildir', 'rcpt_ok']"


def test_installed_server_delivers_mail(site, tmp_path):
    srv = ConfigDir(tmp_path / "srv", plugins=["rcpt_ok", "queue/maildir {maildir}"])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    ours, theirs = socket.socketpair()
    proc = subprocess.Popen([sys.executable, "-m", "qpsmtpd_py.server.single"], stdin=theirs,
                            stdout=theirs, stderr=subprocess.PIPE, env=run_env(site, srv.dir),
                            cwd=str(elsewhere))
    theirs.close()
    c = Client(ours, proc)
    with c:
        c.read_reply()
        assert c.code == 220, c.text
        lines = c.ehlo("installed.test")
        assert "PIPELINING" in lines
        code, text = c.send_message("a@b.test", ["postmaster@mx.example.test"], "Subject: pkg\n\ninstalled",
                                      ehlo=False)
        assert code == 250, text
        assert c.cmd("QUIT")[0] == 221
    assert proc.returncode == 0, c.stderr
    (msg,) = srv.messages()
    assert b"(HELO installed.test) (192.0.2.20)" in msg and msg.endswith(b"\ninstalled\n")


def test_console_script_is_installed(site):
    script = site / "bin" / "qpsmtpd"
    assert script.is_file()
    proc = subprocess.run([str(script), "--version"], env=run_env(site, "/nonexistent"),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "qpsmtpd_py" in proc.stdout, proc.stdout + proc.stderr
