"""plugins/hosts_allow: the rules file (IPv4, IPv6, mapped addresses) and the
per-IP connection limit. The servers' side is in test_prefork/test_forkserver."""

import subprocess

import pytest

from harness import bin_path, free_port

from qpsmtpd_py.constants import DECLINED, DENY, DENYSOFT, OK
from qpsmtpd_py.server.common import load_app

RULES = """
# comments and blank lines are skipped
192.168.3.4      DECLINED
192.168.3.0/24   DENY Sorry, known spam only source
10.1.0.0/16      OK
2001:db8:bad::/48 DENYSOFT Not now
::ffff:198.51.100.0/120 DENY mapped rule
203.0.113.7      DENY_DISCONNECT
"""


@pytest.fixture
def hosts_allow(make_config, monkeypatch):
    def make(rules=RULES):
        srv = make_config(plugins=["hosts_allow", "rcpt_ok"], files={"hosts_allow": rules})
        monkeypatch.setenv("QPSMTPD_CONFIG", srv.dir)
        app = load_app()
        plugin = next(p for p in app.plugins if p.plugin_name == "hosts_allow")
        return lambda ip, **kw: plugin.hook_pre_connection(None, dict(
            remote_ip=ip, remote_port=1234, local_ip="127.0.0.1", local_port=25,
            max_conn_ip=kw.get("max", 0), child_addrs=kw.get("others", [])))
    return make


@pytest.mark.parametrize("ip, expected", [
    ("192.168.3.4", DECLINED),                       # exempted before the /24 rule
    ("192.168.3.5", (DENY, "Sorry, known spam only source")),
    ("::ffff:192.168.3.9", (DENY, "Sorry, known spam only source")),   # qpsmtpd #315
    ("10.1.200.3", OK),
    ("10.2.0.1", DECLINED),
    ("2001:db8:bad:1::25", (DENYSOFT, "Not now")),
    ("2001:db8:bad0::1", DECLINED),
    ("198.51.100.77", (DENY, "mapped rule")),        # a mapped rule is an IPv4 rule
    ("203.0.113.7", 903),
    ("not-an-ip", DECLINED),
])
def test_rules(hosts_allow, ip, expected):
    assert hosts_allow()(ip) == expected


def test_max_conn_ip_counts_other_connections_from_the_same_ip(hosts_allow):
    check = hosts_allow("")
    assert check("192.0.2.1", max=2, others=["192.0.2.1", "192.0.2.9"]) == DECLINED
    assert check("192.0.2.1", max=2, others=["192.0.2.1", "::ffff:192.0.2.1"]) == \
        (DENYSOFT, "too many connections from 192.0.2.1, try again later")
    assert check("2001:db8::1", max=1, others=["2001:DB8:0::1"]) == \
        (DENYSOFT, "too many connections from 2001:db8::1, try again later")
    assert check("192.0.2.1", max=0, others=["192.0.2.1"] * 50) == DECLINED


@pytest.mark.parametrize("line, problem", [
    ("192.168.1.300 DENY", "not an IP address or network"),
    ("10.0.0.0/8 MAYBE", "not a return code"),
    ("10.0.0.1", "expected 'IP[/PREFIX] RETCODE"),
])
def test_malformed_rule_stops_start_up_with_file_and_line(make_config, line, problem):
    srv = make_config(plugins=["hosts_allow", "rcpt_ok"], files={"hosts_allow": ["# ok", line]})
    result = subprocess.run([bin_path("qpsmtpd-forkserver"), "--allow-root", "-l",
                             f"127.0.0.1:{free_port()}"], env=srv.env(), capture_output=True,
                            text=True, timeout=20)
    assert result.returncode == 78
    assert f"{srv.dir}/hosts_allow:2" in result.stderr and problem in result.stderr


def test_child_addrs_from_the_scoreboard_are_read_only_when_looked_at(hosts_allow):
    """prefork passes a lazy view of the scoreboard: a connection whose pre-connection
    plugins never read child_addrs (karma, connection_shaper) costs no scan of it."""
    from qpsmtpd_py.server.scoreboard import BUSY, Scoreboard
    board = Scoreboard(4)
    board.mark(1, BUSY, "192.0.2.1")
    addrs = board.lazy_busy_addrs(exclude=0)
    board.mark(2, BUSY, "192.0.2.1")                 # after the view was made: still seen
    board.mark(0, BUSY, "192.0.2.1")                 # the asking child itself: not counted
    assert addrs._addrs is None                      # nothing read yet
    assert hosts_allow("")("192.0.2.1", max=2, others=addrs) == \
        (DENYSOFT, "too many connections from 192.0.2.1, try again later")
    assert addrs == ["192.0.2.1", "192.0.2.1"] and len(addrs) == 2 and list(addrs)[0] == "192.0.2.1"
    board.close()
