"""relay / check_norelay with IPv6 entries written the way qpsmtpd's sample
relayclients writes them: expanded (2001:0DB8:0000:...:0001), upper case, and
whole-hextet prefixes with or without the trailing colon. Each must match the
client however its address is spelled (issue 8 point 5)."""

import subprocess

import pytest

from harness import bin_path
from tools import require_tool

# qpsmtpd's config.sample/relayclients, unchanged
UPSTREAM_SAMPLE = """# used by plugins/relay
# Format is IP, or IP part with trailing dot
# e.g. "127.0.0.1", or "192.168."
127.0.0.1 
# leading/trailing whitespace is ignored
 192.0. 
#
# IPv6 formats ends in a nibble (not a netmask, prefixlen, or colon)
# RFC 3849 example
2001:DB8
2001:DB8::1
2001:0DB8:0000:0000:0000:0000:0000:0001
"""

EXPANDED = """2001:0DB8:0000:0000:0000:0000:0000:0001
2001:0db8:0005:
2001:0db8:0006:0000::/64
fdda:b13d:e431:ae06:
"""


@pytest.fixture
def relay(make_config):
    def make(*plugins, **files):
        return make_config(plugins=[*plugins, "rcpt_ok", "queue/maildir {maildir}"],
                           files={"rcpthosts": "example.test", "loglevel": "6", **files})
    return make


def foreign_rcpt(srv, ip, env=None):
    """The reply to a RCPT in a foreign domain from client `ip` (250 = may relay)."""
    with srv.session(env={"TCPREMOTEIP": ip, **(env or {})}) as c:
        assert c.cmd("EHLO client.example.net")[0] == 250
        assert c.cmd("MAIL FROM:<a@sender.test>")[0] == 250
        return c.cmd("RCPT TO:<someone@elsewhere.test>")


@pytest.mark.parametrize("ip, relays", [
    ("2001:db8::1", True),
    ("2001:0db8:0000:0000:0000:0000:0000:0001", True),   # the client spelled expanded too
    ("2001:db8::2", False),
    ("2001:db8:5::9", True),                             # 2001:0db8:0005: is a /48
    ("2001:db8:5:ffff:1:2:3:4", True),
    ("2001:db8:4::9", False),
    ("2001:db8:6::7", True),                             # CIDR with leading zeros
    ("2001:db8:6:1::7", False),
    ("fdda:b13d:e431:ae06::25", True),
    ("fdda:b13d:e431:ae07::25", False),
])
def test_expanded_relayclients_entries(relay, ip, relays):
    srv = relay("relay", relayclients=EXPANDED)
    code, text = foreign_rcpt(srv, ip)
    assert (code == 250) == relays, (code, text)
    if not relays:
        assert (code, text) == (550, "5.7.1 Relaying denied (#5.7.1)")


@pytest.mark.parametrize("ip, relays", [
    ("2001:db8::1", True), ("2001:db8:ffff::9", True),   # 2001:DB8 is the /32
    ("2001:db9::1", False), ("192.0.2.77", True), ("192.1.2.77", False),
])
def test_upstream_sample_relayclients(relay, ip, relays):
    srv = relay("check_relay", relayclients=UPSTREAM_SAMPLE)
    assert (foreign_rcpt(srv, ip)[0] == 250) == relays


@pytest.mark.parametrize("plugins", [("relay",), ("relay", "check_norelay")])
@pytest.mark.parametrize("entry", ["2001:0DB8:0000:0000:0000:0000:0000:0001", "2001:0db8:0000:",
                                   "2001:DB8"])
def test_expanded_norelayclients_entries_take_relaying_away(relay, plugins, entry):
    srv = relay(*plugins, norelayclients=entry)
    everyone = {"RELAYCLIENT": ""}
    assert foreign_rcpt(srv, "2001:db8::1", everyone) == (550, "5.7.1 Relaying denied (#5.7.1)")
    assert foreign_rcpt(srv, "2001:db9::1", everyone)[0] == 250


def test_expanded_morerelayclients_keys(relay):
    require_tool("cdb")
    srv = relay("relay")
    keys = b"2001:0DB8:0000:0000:0000:0000:0000:0001 1\n2001:0db8:0009: 1\n"
    subprocess.run([bin_path("cdb"), "-c", "-m", srv.dir + "/morerelayclients.cdb"],
                   input=keys, check=True)
    assert foreign_rcpt(srv, "2001:db8::1")[0] == 250
    assert foreign_rcpt(srv, "2001:db8:9:1::5")[0] == 250
    assert foreign_rcpt(srv, "2001:db8::2")[0] == 550
