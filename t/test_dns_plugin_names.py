"""Every name of issue 10's DNS list and DNS policy plugins loads (upstream, Debian and
qpsmtpd-async names) and has a manual (`qpsmtpd-doc NAME`)."""

import subprocess

import pytest

from harness import bin_path

NAMES = {
    "dnsbl": "dnsbl", "rhsbl": "rhsbl", "dns_whitelist_soft": "dns_whitelist_soft",
    "check_dns_user users.dnscheck.test": "check_dns_user",
    "require_resolvable_client": "require_resolvable_client", "nodialup": "nodialup",
    "fcrdns": "fcrdns", "resolvable_fromhost": "resolvable_fromhost",
    "require_resolvable_fromhost": "require_resolvable_fromhost",
    "helo policy strict": "helo", "check_spamhelo policy rfc": "check_spamhelo", "uribl": "uribl",
    "async/dnsbl": "async/dnsbl", "async/rhsbl": "async/rhsbl", "async/uribl": "async/uribl",
    "async/dns_whitelist_soft": "async/dns_whitelist_soft",
    "async/resolvable_fromhost": "async/resolvable_fromhost",
    "async/require_resolvable_fromhost": "async/require_resolvable_fromhost",
}


@pytest.mark.parametrize("line", list(NAMES))
def test_loads_and_greets(session_server, line):
    d = session_server(line).talk("QUIT", remote_ip="127.0.0.9")
    assert d.codes == [220, 221]


@pytest.mark.no_services
@pytest.mark.parametrize("name", sorted(set(NAMES.values())))
def test_has_a_manual(name):
    out = subprocess.run([bin_path("qpsmtpd-doc"), name], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    base = name.split("/")[-1]
    assert out.stdout.lstrip().startswith((f"{name} - ", f"{base} - ")), out.stdout[:200]
    assert "Declared arguments" in out.stdout or "arguments" in out.stdout.lower()
