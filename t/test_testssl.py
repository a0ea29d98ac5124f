"""testssl.sh (Debian testssl.sh) against our default TLS settings (issue 16 point 10):
STARTTLS on the SMTP port and implicit TLS on a 465-style listener (--smtps-port) of
qpsmtpd-prefork with the sample config and the `tls` line it suggests (certificates
made by qpsmtpd-tls-cert; no tls_protocols, no tls_ciphers).

Asserted from testssl's JSON: SSLv2, SSLv3, TLS 1.0, TLS 1.1 not offered; TLS 1.2 and
1.3 offered; the NULL, anonymous, EXPORT, LOW (64-bit, DES, RC2, RC4) and 3DES/IDEA
categories not offered; RC4 not vulnerable (checked with testssl's own sockets: the
local openssl has no RC4, so --fast, which uses openssl, could not see it); no finding
of severity MEDIUM or worse.

Only the checks asserted run (-p protocols, -s cipher categories, -4 RC4), no DNS
(--nodns none; the target is an IP, so there is nothing to resolve, and testssl
refuses --ip with --nodns none), --warnings off; the two runs go in parallel: about
10 s in all. The findings are printed (-s) and recorded in docs/reliability.md.
"""

import json
import os
import subprocess

import pytest

from campaign import SampleConfig, ranged_port
from harness import bin_path, service_env
from serverproc import Server
from tools import require_tool

TLS_LINE = "tls ssl/qpsmtpd-server.crt ssl/qpsmtpd-server.key ssl/qpsmtpd-ca.crt"
NOT_OFFERED = ("SSLv2", "SSLv3", "TLS1", "TLS1_1", "cipherlist_NULL", "cipherlist_aNULL",
               "cipherlist_EXPORT", "cipherlist_LOW", "cipherlist_3DES_IDEA")
BAD_SEVERITIES = ("MEDIUM", "HIGH", "CRITICAL")


@pytest.fixture
def tls_server(tmp_path):
    require_tool("testssl.sh")
    made = subprocess.run([bin_path("qpsmtpd-tls-cert"), "--dir", str(tmp_path / "ssl"),
                           "--host", "mx.example.test", "--san", "127.0.0.1"],
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    config = SampleConfig(tmp_path, files={"dns_servers": f"127.0.0.1:{service_env('QPT_DNS_PORT')}"})
    with open(os.path.join(config.dir, "plugins")) as fh:
        plugins = fh.read()
    assert "# " + TLS_LINE in plugins           # the line the sample suggests
    config.write("plugins", plugins.replace("# " + TLS_LINE, TLS_LINE))
    smtps = ranged_port()
    with Server("qpsmtpd-prefork", config, "--children", "2", "--smtps-port", str(smtps),
                port=ranged_port()) as srv:
        srv.smtps = smtps
        yield srv


def start_testssl(tmp_path, name, port, *extra):
    out = str(tmp_path / f"{name}.json")
    argv = ["testssl", "--quiet", "--color", "0", "--warnings", "off", "--nodns", "none",
            "-p", "-s", "-4", "--jsonfile", out, *extra, f"127.0.0.1:{port}"]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT), out


def findings(proc, out):
    text = proc.communicate(timeout=120)[0].decode("utf-8", "replace")
    assert os.path.exists(out), text[-2000:]
    with open(out) as fh:
        found = {}
        for item in json.load(fh):
            found.setdefault(item["id"], []).append((item["severity"], item["finding"]))
    return found, text


def test_testssl_starttls_and_implicit_tls_offer_nothing_weak(tls_server, tmp_path):
    runs = {"starttls": start_testssl(tmp_path, "starttls", tls_server.port, "-t", "smtp"),
            "implicit": start_testssl(tmp_path, "implicit", tls_server.smtps)}
    for name, (proc, out) in runs.items():
        found, text = findings(proc, out)
        print(f"\ntestssl {name}:")
        for key, values in found.items():
            print(f"  {key}: {values}")
        for key in NOT_OFFERED:
            assert key in found, (name, key, text[-2000:])     # the check ran
            verdicts = [finding for severity, finding in found[key] if severity != "WARN"]
            assert verdicts and all("not offered" in v for v in verdicts), (name, key, found[key])
        assert found["TLS1_2"][0][1].startswith("offered"), (name, found["TLS1_2"])
        assert found["TLS1_3"][0][1].startswith("offered"), (name, found["TLS1_3"])
        assert any(f in ("not vulnerable", "no RC4 ciphers detected")
                   for _, f in found["RC4"]), (name, found["RC4"])
        worst = [(key, v) for key, values in found.items() for v in values
                 if v[0] in BAD_SEVERITIES]
        assert not worst, (name, worst)
    assert "Traceback" not in tls_server.log
