"""Debian's /etc/qpsmtpd, copied unchanged, runs our server and answers like Perl
qpsmtpd 0.94 on the same directory (issue 10 item 5).

The copy is the installed package's /etc/qpsmtpd (package qpsmtpd). Its plugins are
    check_earlytalker action log, check_relay, rhsbl, dnsbl, check_spamhelo,
    check_badmailfrom, check_badrcptto, check_loop, rcpt_ok,
    $include /etc/qpsmtpd/debian-queue-method
and plugin_dirs is /usr/share/qpsmtpd/plugins, where the Perl plugin files are: our
loader skips them and loads ours of the same names. Three files are changed in the
copy, nothing else, and both servers get the same copy:
  * spool_dir       -> a directory of the test (Debian's /var/spool/qpsmtpd belongs to
                       the package's user and holds a real spool);
  * dns_servers     -> the test nsd on 127.0.0.1 (a file Debian does not ship; Perl
                       does not read it: LoopDNS.pm points its resolvers there);
  * logging         -> the same `logging/file loglevel LOGINFO` line with a file in the
                       test directory instead of /var/log/qpsmtpd/qpsmtpd.log, so the
                       test does not write into the system's log.
The `$include /etc/qpsmtpd/...` lines still read the installed files (debian-rcpthosts:
`unset`, debian-queue-method: empty, so no queue plugin: both servers answer 451).

Runs: dnsbl_zones and rhsbl_zones as shipped (empty), in inetd mode and as forking
daemons; then with a test zone added to each (dnsbl.test, rhsbl.test of
t/services/start-services.sh). Perl runs as in t/test_differential_perl.py (its
harness and comparison are reused), under t/perlshim/LoopDNS.pm so that its dnsbl
and rhsbl ask the test nsd. Differences that are on purpose are declared per step
(Deliberate), each with the reason from the plugin's manual.
"""

import os
import re
import shutil
import socket
import subprocess

import pytest

import test_differential_perl as diff
from harness import QPSMTPD, Client, ConfigDir

ETC = "/etc/qpsmtpd"
SHIPPED_PLUGINS = ["check_earlytalker action log", "check_relay", "rhsbl", "dnsbl",
                   "check_spamhelo", "check_badmailfrom", "check_badrcptto", "check_loop",
                   "rcpt_ok", "$include /etc/qpsmtpd/debian-queue-method"]
NO_QUEUE = "451 Queuing declined or disabled; try again later"
MSG = "Subject: debian\nMessage-Id: <deb.1@client.example.test>\n\nHello."


class DebianConfig(ConfigDir):
    """A copy of /etc/qpsmtpd with only spool_dir, dns_servers and logging changed."""

    def __init__(self, root, zones=False):
        self.tmp = str(root)
        self.dir = os.path.join(self.tmp, "config")
        self.maildir = os.path.join(self.tmp, "Maildir")
        shutil.copytree(ETC, self.dir)
        self.write("spool_dir", os.path.join(self.tmp, "spool"))
        self.write("dns_servers", f"127.0.0.1:{os.environ.get('QPT_DNS_PORT', '5353')}")
        self.write("logging", "logging/file loglevel LOGINFO " + os.path.join(self.tmp, "qpsmtpd.log"))
        if zones:
            self.write("dnsbl_zones", "dnsbl.test")
            self.write("rhsbl_zones", "rhsbl.test")


def perl_loopdns(*argv):
    return ["perl", "-T", "-I", diff.SHIM, "-MLoopDNS", *argv]


class Inetd(diff.InetdServer):
    """diff.InetdServer with Perl under LoopDNS (its Net::DNS asks the test nsd)."""

    def connect(self, env=None):
        if not self.perl:
            return super().connect(env)
        ours, theirs = socket.socketpair()
        environ = self.cfg.env({"TCPREMOTEIP": diff.CLIENT_IP, **(env or {})})
        environ["LOOPDNS_SERVER"] = f"127.0.0.1:{os.environ.get('QPT_DNS_PORT', '5353')}"
        proc = subprocess.Popen(perl_loopdns(diff.PERL_INETD), stdin=theirs, stdout=theirs,
                                stderr=subprocess.PIPE, env=environ, cwd=self.cfg.tmp)
        theirs.close()
        self.procs.append(proc)
        return Client(ours, proc, timeout=diff.REPLY_TIMEOUT)


Deliberate, Dialogue = diff.Deliberate, diff.Dialogue
GONE = r"<closed>"      # Perl has hung up after its 550
DNSBL_AT_RCPT = ("dnsbl refuses a listed client at RCPT so that postmaster stays reachable "
                 "(`reject connect` refuses at connect, as 0.94's default does)")
RHSBL_TEXT = ("rhsbl names the listed sender domain; 0.94 says `Mail from HELO <helo>` for "
              "every TXT listing of the sender's domain")

CHECK_LOOP = ("check_loop is the loop plugin with its max_hops (plugins/check_loop.py); Debian "
              "0.94's wrapper loses the limit and refuses every message")

SHIPPED = [
    Dialogue("not_relayed", [
        "HELO client.example.test", "FOO", "MAIL FROM:<a@example.test>", "RCPT TO:<u@example.test>",
        "RCPT TO:<postmaster>", "DATA", ("data", MSG), "MAIL FROM:<>", "RCPT TO:<postmaster>",
        "VRFY x", "NOOP", "QUIT", ("closed",)],
        deliberate={6: Deliberate(CHECK_LOOP, perl=r"552 Too many hops \(#5\.4\.6\)",
                                  ours=re.escape(NO_QUEUE))}),
    Dialogue("relay_client_message", [
        "EHLO client.example.test", "MAIL FROM:<a@example.test>", "RCPT TO:<u@example.test>",
        "RCPT TO:<v@foreign.test>", "DATA", ("data", MSG), "QUIT"],
        env={"TCPREMOTEIP": "127.0.0.1"}, modes=("inetd",),
        deliberate={5: Deliberate(CHECK_LOOP, perl=r"552 Too many hops \(#5\.4\.6\)",
                                  ours=re.escape(NO_QUEUE))}),
    Dialogue("spamhelo", ["HELO localhost", "QUIT"], modes=("inetd",)),
]

ZONES = [
    Dialogue("unlisted_client", [
        "HELO client.example.test", "MAIL FROM:<a@example.test>", "RCPT TO:<postmaster>",
        "QUIT"], env={"TCPREMOTEIP": "127.0.0.9"}),
    Dialogue("dnsbl_listed_client", [
        "HELO client.example.test", "MAIL FROM:<a@example.test>", "RCPT TO:<postmaster>",
        "RCPT TO:<u@example.test>", "QUIT"], env={"TCPREMOTEIP": "127.0.0.2"},
        deliberate={
            -1: Deliberate(DNSBL_AT_RCPT, perl=r"550 127\.0\.0\.2 is listed in dnsbl\.test",
                           ours=r"220 .*"),                       # the greeting
            0: Deliberate(DNSBL_AT_RCPT, perl=GONE,
                          ours=r"250 \S+ Hi \[127\.0\.0\.2\] \[127\.0\.0\.2\]; I am so happy to meet you\."),
            1: Deliberate(DNSBL_AT_RCPT, perl=GONE, ours=r"250 <a@example.test>.*"),
            2: Deliberate(DNSBL_AT_RCPT, perl=GONE,
                          ours=r"250 <postmaster>, recipient ok"),
            3: Deliberate(DNSBL_AT_RCPT, perl=GONE,
                          ours=r"550 127\.0\.0\.2 is listed in dnsbl\.test"),
            4: Deliberate(DNSBL_AT_RCPT, perl=GONE, ours=r"221 .*"),
        }),
    Dialogue("rhsbl_listed_sender", [
        "HELO client.example.test", "MAIL FROM:<x@spam.test>", "MAIL FROM:<x@example.test>",
        "QUIT"],
        deliberate={1: Deliberate(
            RHSBL_TEXT,
            perl=r"550 Mail from HELO client\.example\.test rejected because it spam\.test is "
                 r"listed in rhsbl\.test",
            ours=r"550 Mail from spam\.test rejected because it spam\.test is listed in rhsbl\.test")}),
]


@pytest.fixture(scope="module")
def perl_ok():
    diff.require_tool("perl qpsmtpd")


def test_the_copy_is_debians_own():
    with open(os.path.join(ETC, "plugins")) as fh:
        lines = [l.strip() for l in fh if l.strip() and not l.startswith("#")]
    assert lines == SHIPPED_PLUGINS
    with open(os.path.join(ETC, "plugin_dirs")) as fh:
        dirs = [l.strip() for l in fh if l.strip() and not l.lstrip().startswith("#")]
    assert dirs == ["/usr/share/qpsmtpd/plugins"]


def pair(tmp_path, mode, zones):
    perl_cfg = DebianConfig(tmp_path / "perl", zones)
    our_cfg = DebianConfig(tmp_path / "ours", zones)
    cls = Inetd if mode == "inetd" else diff.ForkServer
    return cls(perl_cfg, perl=True), cls(our_cfg, perl=False)


def run(tmp_path, mode, zones, dialogues):
    perl, ours = pair(tmp_path, mode, zones)
    problems = []
    try:
        for dialogue in dialogues:
            if mode not in dialogue.modes:
                continue
            found, _left, _right = diff.compare(dialogue, mode, perl, ours)
            problems += found
    finally:
        perl.stop()
        ours.stop()
    assert not problems, "\n\n".join(problems)
    return ours


@pytest.mark.parametrize("mode", ["inetd", "forkserver"])
def test_shipped_config_answers_like_perl(tmp_path, perl_ok, mode):
    ours = run(tmp_path, mode, False, SHIPPED)
    log = open(os.path.join(ours.cfg.tmp, "qpsmtpd.log")).read()
    assert "skipping Perl plugin /usr/share/qpsmtpd/plugins/dnsbl" in log


def test_with_test_zones_answers_like_perl(tmp_path, perl_ok):
    run(tmp_path, "inetd", True, ZONES)


def test_our_server_starts_with_the_copy_and_logs_where_it_says(tmp_path):
    cfg = DebianConfig(tmp_path)
    with cfg.session(args=["-H"]) as client:
        assert client.code == 220
        assert client.cmd("QUIT")[0] == 221
    with open(os.path.join(cfg.tmp, "qpsmtpd.log")) as fh:
        log = fh.read()
    for name in ("dnsbl", "rhsbl", "check_relay", "check_spamhelo", "check_earlytalker", "rcpt_ok"):
        assert re.search(rf"skipping Perl plugin /usr/share/qpsmtpd/plugins/{name} ", log), name
