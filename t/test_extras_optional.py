"""Heavy libraries are extras (issue 14 item 1): ldap3 (ldap), pymysql (sql), python-pam
(pam), cryptography (tls-cert; dkim for domainkeys). The server runs without them, and a
plugin or tool that needs one stops with the pip command naming its extra."""

import os
import subprocess
import sys
import textwrap

import pytest

from inproc import InProcessServer
from test_constraints_min import project

pytestmark = pytest.mark.no_services

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HIDE = "import sys\nfor m in {mods!r}: sys.modules[m] = None\n"


def run_without(mods, code):
    script = HIDE.format(mods=list(mods)) + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=REPO, timeout=60)


def test_pyproject_keeps_them_out_of_the_dependencies():
    meta = project()
    required = " ".join(meta["dependencies"])
    extras = {name: " ".join(reqs) for name, reqs in meta["optional-dependencies"].items()}
    for name, extra in (("ldap3", "ldap"), ("pymysql", "sql"), ("python-pam", "pam"),
                        ("cryptography", "tls-cert"), ("cryptography", "dkim"),
                        ("maxminddb", "geoip"), ("redis", "redis"), ("dkimpy", "dkim"),
                        ("Pillow", "captcha"), ("publicsuffixlist", "dmarc")):
        assert name not in required
        assert name in extras[extra]
    for extra in ("ldap", "sql", "pam", "tls-cert", "spf", "dkim", "dmarc", "geoip", "redis", "captcha"):
        assert extra in extras["all"]


@pytest.mark.parametrize("line, hidden, extra", [
    ("rcpt_ldap ldap_base dc=x", "ldap3", "ldap"),
    ("auth/auth_ldap_bind ldap_base dc=x", "ldap3", "ldap"),
    ("auth/auth_vpopmail_sql", "pymysql", "sql"),
    ("auth/authpam", "pam", "pam"),
    ("domainkeys", "cryptography", "dkim"),
    ("domainkeys_sign", "cryptography", "dkim"),
    ("dkim", "dkim", "dkim"),
    ("sender_permitted_from", "spf", "spf"),
    ("dmarc", "publicsuffixlist", "dmarc"),
    ("ident/geoip", "maxminddb", "geoip"),
    ("geo_blacklist_whitelist", "maxminddb", "geoip"),
    ("autowhitelist_captcha", "PIL", "captcha"),
])
def test_a_plugin_without_its_library_names_the_extra(mail_config, monkeypatch, line, hidden, extra):
    for name in list(sys.modules):
        if name == hidden or name.startswith(hidden + "."):
            monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, hidden, None)
    with pytest.raises(Exception, match=rf"config/plugins:1: .*pip install 'qpsmtpd_py\[{extra}\]'"):
        InProcessServer(mail_config(line))


def test_the_server_and_its_tools_run_without_any_of_them(mail_config):
    cfg = mail_config("relay", "auth/auth_flat_file")
    result = run_without(["ldap3", "pymysql", "pam", "cryptography"], f"""
        import qpsmtpd_py.api
        from qpsmtpd_py.app import Qpsmtpd
        from qpsmtpd_py.config import Config
        app = Qpsmtpd(Config([{cfg.dir!r}])).load()
        print(len(app.plugins))
        from qpsmtpd_py.cli import tlscert
        sys.exit(tlscert.main(["--dir", "/nonexistent"]))
        """)
    assert result.stdout.strip() == "4", result.stderr
    assert result.returncode == 1
    assert "pip install 'qpsmtpd_py[tls-cert]'" in result.stderr
