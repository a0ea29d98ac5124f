"""scripts/install (issue 14 item 2) into a scratch root (--destdir): the venv under
/opt/qpsmtpd-py, a config dir of our own, units rendered with the real paths that
`systemd-analyze verify` accepts, the docs where the units' Documentation= points; a
second run changes nothing an admin edited. No real /opt, /etc or user is touched."""

import glob
import os
import shutil
import subprocess
import sysconfig

import pytest

from tools import require_tool

pytestmark = pytest.mark.no_services

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNITS = ("qpsmtpd-prefork.service", "qpsmtpd-forkserver.service", "qpsmtpd.socket",
         "qpsmtpd@.service", "qpsmtpd-prefork.socket")


def prepare_venv(dest):
    """The venv the script would make, seeing this test venv's packages (setuptools,
    wheel and the dependencies) through a .pth file: the test works offline."""
    venv = dest / "opt" / "qpsmtpd-py"
    subprocess.run(["python3", "-m", "venv", str(venv)], check=True, timeout=120)
    site = glob.glob(str(venv / "lib" / "python3*" / "site-packages"))[0]
    with open(os.path.join(site, "test-deps.pth"), "w") as fh:
        fh.write(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def install(dest):
    return subprocess.run(["bash", os.path.join(ROOT, "scripts", "install"), "--destdir", str(dest),
                           "--pip-args", "--no-deps --no-index --no-build-isolation"],
                          capture_output=True, text=True, timeout=600, cwd="/")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    dest = tmp_path_factory.mktemp("root")
    prepare_venv(dest)
    result = install(dest)
    assert result.returncode == 0, result.stderr
    return dest


def test_units_are_rendered_with_the_real_paths(installed):
    for name in UNITS:
        text = (installed / "etc" / "systemd" / "system" / name).read_text()
        assert "/usr/local/bin" not in text and "/etc/qpsmtpd " not in text
        assert "Documentation=file:/usr/share/doc/qpsmtpd-py/servers.md" in text
        if name.endswith(".service"):
            assert "Environment=QPSMTPD_CONFIG=/etc/qpsmtpd-py\n" in text
            assert "ExecStart=/opt/qpsmtpd-py/bin/qpsmtpd" in text
            assert "StateDirectory=qpsmtpd-py\n" in text and "LogsDirectory=qpsmtpd-py\n" in text
        if name in ("qpsmtpd-prefork.service", "qpsmtpd-forkserver.service"):
            assert "--metrics-listen 127.0.0.1:9125\n" in text    # qpsmtpd-admin status's default
    assert (installed / "usr/share/doc/qpsmtpd-py/servers.md").is_file()
    assert (installed / "usr/share/doc/qpsmtpd-py/README.md").is_file()


def test_installed_units_pass_systemd_analyze_verify(installed):
    require_tool("systemd-analyze")
    units = []
    for name in UNITS:      # ExecStart= must be executable: the scratch root's venv scripts
        text = (installed / "etc/systemd/system" / name).read_text()
        copy = installed / "verify" / name
        copy.parent.mkdir(exist_ok=True)
        copy.write_text(text.replace("/opt/qpsmtpd-py/", f"{installed}/opt/qpsmtpd-py/"))
        units.append(str(copy))
    result = subprocess.run([shutil.which("systemd-analyze"), "verify", *units],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), \
        result.stdout + result.stderr


def test_the_installed_config_is_our_own_and_checks_clean(installed):
    conf = installed / "etc" / "qpsmtpd-py"
    plugins = (conf / "plugins").read_text()
    assert "queue/maildir /var/lib/qpsmtpd-py/Maildir" in plugins
    assert (conf / "spool_dir").read_text().splitlines()[-1] == "/var/lib/qpsmtpd-py/spool"
    assert not (conf / "dns_servers").exists()        # the system's resolver
    assert not (installed / "etc" / "qpsmtpd").exists()
    tool = installed / "opt/qpsmtpd-py/bin/qpsmtpd-check-config"
    result = subprocess.run([str(tool), str(conf)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert os.readlink(installed / "usr/local/bin/qpsmtpd-admin") == "/opt/qpsmtpd-py/bin/qpsmtpd-admin"
    assert os.readlink(installed / "usr/local/bin/qpsmtpd-check-config") == \
        "/opt/qpsmtpd-py/bin/qpsmtpd-check-config"


def test_a_second_run_keeps_the_admins_config(installed):
    conf = installed / "etc" / "qpsmtpd-py" / "rcpthosts"
    conf.write_text("mail.example.org\n")
    unit = installed / "etc/systemd/system/qpsmtpd-prefork.service"
    before = unit.read_text()
    result = install(installed)
    assert result.returncode == 0, result.stderr
    assert "kept the existing config" in result.stderr
    assert conf.read_text() == "mail.example.org\n"
    assert unit.read_text() == before
