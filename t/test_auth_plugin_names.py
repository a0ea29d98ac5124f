"""The sender-authentication and GeoIP plugins load by each of their names, have a
manual (qpsmtpd-doc), and without their Python library refuse to load with the
command that installs it."""

import os
import subprocess
import sys

import pytest

from harness import bin_path

pytestmark = pytest.mark.no_services

NAMES = {
    "sender_permitted_from": "Received-SPF", "spf_deny": "no_dmarc_policy", "dkim": "config/dkim/",
    "domainkeys": "DomainKey-Signature", "domainkeys_sign": "nofws", "dmarc": "quarantine",
    "ident/geoip": "geoip_country", "geo_blacklist_whitelist": "geo_whitelist",
}


@pytest.mark.parametrize("name", sorted(NAMES))
def test_manual_page(name, tmp_path):
    out = subprocess.run([bin_path("qpsmtpd-doc"), name], capture_output=True, text=True,
                         env={**os.environ, "QPSMTPD_CONFIG": str(tmp_path)}, timeout=60)
    assert out.returncode == 0, out.stderr
    assert NAMES[name] in out.stdout
    assert "Declared arguments" in out.stdout


@pytest.mark.parametrize("name, module, extra", [
    ("sender_permitted_from", "spf", "spf"), ("dkim", "dkim", "dkim"), ("dmarc", "publicsuffixlist", "dmarc"),
    ("domainkeys", "authres", "dkim"), ("ident/geoip", "maxminddb", "geoip"),
    ("geo_blacklist_whitelist", "maxminddb", "geoip"),
])
def test_a_missing_library_stops_start_up_naming_the_extra(name, module, extra, tmp_path):
    (tmp_path / "plugins").write_text(f"{name}\n")
    (tmp_path / "dns_servers").write_text(f"127.0.0.1:{os.environ.get('QPT_DNS_PORT', '5353')}\n")
    code = ("import sys\n"
            f"sys.modules[{module!r}] = None\n"
            "from qpsmtpd_py.app import Qpsmtpd\n"
            "from qpsmtpd_py.config import Config\n"
            f"app = Qpsmtpd(Config([{str(tmp_path)!r}]))\n"
            "try:\n    app.load()\nexcept Exception as exc:\n    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert f"pip install 'qpsmtpd_py[{extra}]'" in out.stdout, (out.stdout, out.stderr)
