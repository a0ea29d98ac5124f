"""qmail_deliverable / check_qmail_deliverable against t/stubs/qmail-deliverabled, a
stand-in that speaks qmail-deliverabled's HTTP interface on a free loopback port."""

import os
import subprocess
import sys

import pytest

from harness import free_port, wait_for_port
from test_policy_lists import envelope

STUB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "stubs", "qmail-deliverabled")
UNDELIVERABLE = (550, "5.1.1 Sorry, no mailbox here by that name. qd (#5.1.1)")
TABLE = """alice@example.test      0xf1
o'brien+x@example.test  0xf1
list@example.test       0x14
perm@example.test       0x11
temp@example.test       0x21
vuser@example.test      0xf2
undef@example.test      undef
broken@example.test     http500
garbage@example.test    garbage
slow@example.test       sleep
@example.test           0x00
@other.test             0x00
"""


@pytest.fixture
def daemon(tmp_path):
    """The stand-in daemon: .port, .queries() (the addresses it was asked about)."""
    port = free_port()
    table, log = tmp_path / "qd-table", tmp_path / "qd-log"
    table.write_text(TABLE)
    proc = subprocess.Popen([sys.executable, STUB, "--listen", f"127.0.0.1:{port}",
                             "--table", str(table), "--log", str(log)])
    try:
        assert wait_for_port("127.0.0.1", port), "qmail-deliverabled stand-in did not start"
        proc.port = port
        proc.queries = lambda: log.read_text().split("\n")[:-1] if log.exists() else []
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def server(make_config):
    def make(line, files=None, first=()):
        files = dict(files or {})
        files.setdefault("rcpthosts", "example.test\nother.test\nunrouted.test")
        files.setdefault("loglevel", "6")
        return make_config(plugins=[*first, line, "rcpt_ok", "queue/maildir {maildir}"], files=files)
    return make


@pytest.mark.parametrize("name", ["qmail_deliverable", "check_qmail_deliverable"])
def test_each_status(server, daemon, name):
    srv = server(f"{name} server 127.0.0.1:{daemon.port}")
    with srv.session() as c:
        c.ehlo()
        replies = envelope(c, "s@far.test", "Alice@Example.test", "o'brien+x@example.test",
                           "list@example.test", "perm@example.test", "temp@example.test",
                           "vuser@example.test", "undef@example.test", "broken@example.test",
                           "garbage@example.test", "nobody@example.test", "x@far.test")
        assert [r[0] for r in replies[:9]] == [250] * 9, replies
        assert replies[9] == UNDELIVERABLE
        assert replies[10] == (550, "5.7.1 Relaying denied (#5.7.1)"), "0xff: not local, rcpt_ok decides"
        # an ezmlm list takes no bounces
        assert envelope(c, "", "list@example.test", "alice@example.test") == [
            (550, "5.7.1 fail, mailing lists do not accept null senders"),
            (250, "2.1.5 <alice@example.test>, recipient ok")]
    assert daemon.queries()[:3] == ["/qd1/deliverable alice@example.test",
                                    "/qd1/deliverable o'brien+x@example.test",
                                    "/qd1/deliverable list@example.test"]
    log = c.stderr
    assert "pass, normal delivery (alice@example.test)" in log
    assert "answered 500 Internal Server Error" in log
    assert "sent 'what?'" in log
    assert "error (unknown) checking 'undef@example.test'" in log


def test_daemon_down(server):
    port = free_port()
    srv = server(f"qmail_deliverable server 127.0.0.1:{port}")
    with srv.session() as c:
        c.ehlo()
        assert envelope(c, "s@far.test", "nobody@example.test")[0][0] == 250, \
            "as documented: deliverability is assumed"
    assert f"qmail-deliverabled 127.0.0.1:{port} unreachable or broken" in c.stderr
    srv.set_plugins([f"qmail_deliverable server 127.0.0.1:{port} on_error defer", "rcpt_ok"])
    with srv.session() as c:
        c.ehlo()
        assert envelope(c, "s@far.test", "nobody@example.test") == [
            (450, "4.7.1 Temporary failure checking the recipient, try again later")]


def test_timeout(server, daemon):
    srv = server(f"qmail_deliverable server 127.0.0.1:{daemon.port} timeout 0.5 on_error defer")
    with srv.session() as c:
        c.ehlo()
        assert envelope(c, "s@far.test", "slow@example.test")[0][0] == 450


def test_default_server_and_vpopmail_ext(server, daemon):
    srv = server(f"qmail_deliverable server 127.0.0.1:{daemon.port} vpopmail_ext 1")
    with srv.session() as c:
        c.ehlo()
        replies = envelope(c, "s@far.test", "vuser-lists@example.test", "nobody-x@example.test")
        assert replies[0][0] == 250 and replies[1] == UNDELIVERABLE
    assert daemon.queries() == ["/qd1/deliverable vuser-lists@example.test",
                                "/qd1/deliverable vuser@example.test",
                                "/qd1/deliverable nobody-x@example.test",
                                "/qd1/deliverable nobody@example.test"]
    srv.set_plugins([f"qmail_deliverable server 127.0.0.1:{daemon.port}", "rcpt_ok"])
    with srv.session() as c:
        c.ehlo()
        assert envelope(c, "s@far.test", "vuser-lists@example.test") == [UNDELIVERABLE]


def test_smtproutes(server, daemon):
    routes = "example.test:[127.0.0.1]:25\n.other.test:127.0.0.1\nnoroute.test:\n"
    srv = server(f"qmail_deliverable server smtproutes:{daemon.port}",
                 files={"smtproutes": routes, "rcpthosts": "example.test\n.other.test\nunrouted.test"})
    with srv.session() as c:
        c.ehlo()
        replies = envelope(c, "s@far.test", "nobody@example.test", "x@sub.other.test",
                           "nobody@unrouted.test")
        assert replies[0] == UNDELIVERABLE
        assert replies[1][0] == 250, "0xff from the stand-in: not local"
        assert replies[2][0] == 250, "no route and no fallback host: not checked"
    assert "skip, no smtproute for unrouted.test" in c.stderr
    srv.set_plugins([f"qmail_deliverable server smtproutes:127.0.0.1:{daemon.port}", "rcpt_ok"])
    srv.write("rcpthosts", "example.test\nother.test")
    with srv.session() as c:
        c.ehlo()
        assert envelope(c, "s@far.test", "nobody@other.test") == [UNDELIVERABLE], "fallback host"


def test_relay_clients_are_not_checked(server, daemon):
    srv = server(f"qmail_deliverable server 127.0.0.1:{daemon.port}", first=["relay"],
                 files={"relayclients": "192.0.2.10"})
    with srv.session() as c:
        c.ehlo()
        assert envelope(c, "s@example.test", "nobody@example.test")[0][0] == 250
    assert daemon.queries() == []


def test_reject_0_only_logs(server, daemon):
    """qpsmtpd's `reject` argument: 0 logs an undeliverable recipient and lets the
    next plugin decide (rcpt_ok accepts it for our domain)."""
    srv = server(f"qmail_deliverable server 127.0.0.1:{daemon.port} reject 0")
    with srv.session() as c:
        c.ehlo()
        assert envelope(c, "s@far.test", "nobody@example.test")[0][0] == 250
    assert "fail, tolerated (nobody@example.test is not deliverable)" in c.stderr


@pytest.mark.parametrize("args, message", [
    ("server localhost", "is not HOST:PORT"),
    ("server smtproutes:host:", "is not smtproutes:[HOST:]PORT"),
    ("on_error maybe", "on_error 'maybe': expected one of accept, defer"),
    ("reject maybe", "reject 'maybe': expected one of 0, 1, naughty"),
    ("server", "'server' needs a value"),
    ("servr 127.0.0.1:1", "unknown argument keyword 'servr'; did you mean 'server'?"),
])
def test_bad_arguments_stop_startup(server, args, message):
    srv = server(f"qmail_deliverable {args}")
    c = srv.session(read_greeting=False)
    with pytest.raises(EOFError):
        c.read_reply()
    assert message in c.stderr
