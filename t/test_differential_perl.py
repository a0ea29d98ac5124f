"""Differential test: the same scripted SMTP dialogues against Perl qpsmtpd 0.94
(Debian package `qpsmtpd`) and against qpsmtpd_py, compared reply by reply.

Both servers get the same config (`me`, `rcpthosts`, `relayclients`, `badmailfrom`,
`badrcptto`, `databytes`, `timeout`, the same `plugins` lines); only `plugin_dirs`
differs: the Perl side loads /usr/share/qpsmtpd/plugins, ours the bundled plugins/.

Two modes, each dialogue in a fresh connection:
* inetd: one process per session on a socketpair with TCPREMOTEIP=192.0.2.10 (our
  `qpsmtpd -H`; for Perl t/perlshim/qpsmtpd-inetd, upstream's tcpserver script,
  which Debian does not ship);
* forkserver: Perl's /usr/bin/qpsmtpd-forkserver and our qpsmtpd-forkserver on free
  127.0.0.1 ports.
Perl always runs as `perl -T -I t/perlshim -MNoDNS`: NoDNS.pm makes every resolver
call fail at once, because 0.94 looks up the client's PTR through /etc/resolv.conf
(off this machine) whatever -H says. No packet leaves the machine.

What is normalised (and nothing else; any other difference fails the test with a
diff of the two transcripts):
* the product/version: `qpsmtpd 0.94`, `qpsmtpd/0.94` vs `qpsmtpd_py <ver>`;
* forkserver mode: the `Hi <remote_info>` / `from <remote_info>` name, which depends
  on rDNS (Perl: `Unknown`, ours with -H: `[127.0.0.1]`);
* after a successful EHLO, the RFC 3463 code we put in front of reply texts, and the
  EHLO keywords we add (ENHANCEDSTATUSCODES, SMTPUTF8) -- README "Differences";
* Received date; the Maildir file name; Perl's Delivered-To lines are put back in
  recipient order (0.94 writes them reversed -- README).
Deliberate differences (README "Differences from qpsmtpd (on purpose)": bare LF in
DATA, long command lines, SIZE at MAIL, the time-out reply, address quoting,
badmailfrom at RCPT, bare MAIL/RCPT, header-less messages) are not hidden: each such
step lists what each side must answer (class Deliberate), and both are checked.

Under CI=true a Perl qpsmtpd that does not answer a session fails the test (packages
qpsmtpd and libnet-ip-perl are in the PKGS list of t/services/start-services.sh; the
probe is in t/tools.py); elsewhere it is skipped. To watch the shim at
work: NODNS_LOG=1 makes NoDNS.pm log every lookup it refused (the forkserver log).
"""

import difflib
import os
import re
import signal
import socket
import subprocess
import time

import pytest

from harness import QPSMTPD, Client, ConfigDir, bin_path, free_port
from tools import require_tool

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SHIM = os.path.join(HERE, "perlshim")
PERL_INETD = os.path.join(SHIM, "qpsmtpd-inetd")
PERL_PLUGINS = "/usr/share/qpsmtpd/plugins"
PERL_FORKSERVER = "/usr/bin/qpsmtpd-forkserver"
OUR_PLUGINS = os.path.join(REPO, "plugins")
CLIENT_IP = "192.0.2.10"
REPLY_TIMEOUT = 8

# ---------------------------------------------------------------- the configurations

BASE_PLUGINS = [
    "relay",
    "count_unrecognized_commands 4",
    "noop_counter 3",
    "badmailfrom",
    "badrcptto",
    "rcpt_ok",
    "queue/maildir {maildir}",
]

FILES = {
    "rcpthosts": ["example.test", ".sub.example.test"],
    "relayclients": ["192.0.2.77", "198.51.100."],
    "badmailfrom": ["spammer@bad.test", "@badhost.test"],
    "badrcptto": ["blocked@example.test", "@blocked.example.test"],
    "size_threshold": "10000",
}

VARIANTS = {
    "base": (BASE_PLUGINS, {}),
    "anglebrackets": (["dont_require_anglebrackets"] + BASE_PLUGINS, {}),
    "check_relay": (["check_relay" if p == "relay" else p for p in BASE_PLUGINS], {}),
    "help": (["help help_dir {dir}/../help"] + BASE_PLUGINS, {}),
    "databytes": (BASE_PLUGINS, {"databytes": "2000"}),
    "timeout": (BASE_PLUGINS, {"timeout": "2"}),
    "norcpt": (["queue/maildir {maildir}"], {}),
}


@pytest.fixture(scope="module")
def perl_ok():
    """Perl qpsmtpd must answer a session (t/tools.py), not merely be installed."""
    require_tool("perl qpsmtpd")


def make_side(base, side, variant):
    """A ConfigDir for one server; identical for both sides except plugin_dirs."""
    plugins, extra = VARIANTS[variant]
    root = base / side
    root.mkdir(parents=True, exist_ok=True)
    cfg = ConfigDir(root, plugins=plugins, files={**FILES, **extra})
    cfg.write("plugin_dirs", PERL_PLUGINS if side == "perl" else OUR_PLUGINS)
    help_dir = os.path.join(cfg.tmp, "help")
    os.makedirs(help_dir, exist_ok=True)
    with open(os.path.join(help_dir, "mail"), "w") as fh:
        fh.write("MAIL FROM:<address> [parameters]\nStarts a mail transaction.\n")
    return cfg


def perl_command(*argv):
    return ["perl", "-T", "-I", SHIM, "-MNoDNS", *argv]


# ---------------------------------------------------------------- servers

class InetdServer:
    """One process per connection on a socketpair (tcpserver style)."""

    def __init__(self, cfg, perl):
        self.cfg, self.perl = cfg, perl
        self.procs = []

    def connect(self, env=None):
        ours, theirs = socket.socketpair()
        argv = perl_command(PERL_INETD) if self.perl else [QPSMTPD, "-H"]
        environ = self.cfg.env({"TCPREMOTEIP": CLIENT_IP, **(env or {})})
        proc = subprocess.Popen(argv, stdin=theirs, stdout=theirs, stderr=subprocess.PIPE,
                                env=environ, cwd=self.cfg.tmp)
        theirs.close()
        self.procs.append(proc)
        return Client(ours, proc, timeout=REPLY_TIMEOUT)

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc.stderr and not proc.stderr.closed:
                proc.stderr.close()


class ForkServer:
    """A forking daemon on a free 127.0.0.1 port, logging to a file."""

    def __init__(self, cfg, perl):
        self.cfg, self.perl = cfg, perl
        self.port = free_port()
        self.log_path = os.path.join(cfg.tmp, f"forkserver.{self.port}.log")
        if perl:
            argv = perl_command(PERL_FORKSERVER, "-l", "127.0.0.1", "-p", str(self.port),
                                "-u", "root")
        else:
            argv = [bin_path("qpsmtpd-forkserver"), "--config", cfg.dir, "--allow-root", "-H",
                    "-l", f"127.0.0.1:{self.port}"]
        environ = cfg.env({"NODNS_LOG": "1"} if perl else None)
        environ.pop("TCPREMOTEIP", None)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, env=environ, cwd=cfg.tmp)
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"{argv} exited {self.proc.returncode}: {self.read_log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{argv} does not listen: {self.read_log()}")
                time.sleep(0.05)
        # the probe connection above was a session too: let it end
        time.sleep(0.2)

    def read_log(self):
        with open(self.log_path, "rb") as fh:
            return fh.read().decode("utf-8", "replace")

    def connect(self, env=None):
        assert not env, "forkserver mode takes the client's facts from the socket"
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=REPLY_TIMEOUT)
        return Client(sock, None, timeout=REPLY_TIMEOUT)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# ---------------------------------------------------------------- dialogues

class Deliberate:
    """A step where the two servers differ on purpose (README "Differences from
    qpsmtpd"): each side's reply (lines joined by \n, after normalisation) must
    fully match its own pattern; both are then shown as <deliberate: reason>.
    Keys in Dialogue.deliberate: a step's index or its command string, "idle" (the
    last step), ("message", n) for the n-th delivered file (whole text) and
    "count" for the number of files delivered."""

    def __init__(self, reason, perl, ours, modes=("inetd", "forkserver")):
        self.reason, self.perl, self.ours, self.modes = reason, perl, ours, modes


class Dialogue:
    """steps: a str is one command line (CRLF added, one reply read); tuples:
    ("data", text)   message lines (\n separated, dot-stuffed), then ".", one reply
    ("raw", bytes[, secs])   sent as is, one reply read (waiting at most secs)
    ("closed",)      did the server close the connection (within 3 s)?
    ("idle", secs)   say nothing; the reply (or close) that comes within secs
    """

    def __init__(self, name, steps, variant="base", env=None, deliberate=None,
                 modes=("inetd", "forkserver")):
        self.name, self.steps, self.variant, self.env = name, steps, variant, env
        self.deliberate = deliberate or {}
        self.modes = modes


MSG = "Subject: differential test\nMessage-Id: <diff.1@client.example.test>\n\nHello.\n..dot line\nBye."
MSG_NO_ID = "Subject: no message id\n\nbody"
SENDER_OK = ", sender OK - how exciting to get mail from you!"

# The reasons, as README "Differences from qpsmtpd (on purpose)" words them.
BARE_VERB = ("MAIL/RCPT without any argument: 501 Syntax error in command, as 0.94 answers "
             "`MAIL ` (0.94 skips its syntax check for the bare verb)")
QUOTING = ("a path that needs quoting is written the RFC 5321 way (\"a b\", \"a..b\"); 0.94 "
           "backslash-escapes every special character and leaves a..b unquoted")
QUOTED_SPACE = ("a quoted local part may hold spaces (RFC 5321 qtextSMTP); 0.94 refuses "
                "<\"a b\"@x> with 501 but accepts <a b@x>")
BADMAILFROM = ("badmailfrom refuses every RCPT like qmail-smtpd (250 to MAIL); 0.94 refuses "
               "the MAIL itself")
NO_HEADER = ("a message that does not start with a header field keeps its first lines as "
             "body; 0.94 silently drops everything before the first blank line")


def badmailfrom_step(sender):
    return {
        "mail": Deliberate(BADMAILFROM,
                           perl=r"550 Your envelope sender is in my badmailfrom list",
                           ours=re.escape(f"250 <{sender}>{SENDER_OK}")),
        "rcpt": Deliberate(BADMAILFROM, perl=r"503 Use MAIL before RCPT",
                           ours=r"550 sorry, your envelope sender is in my badmailfrom list"),
    }


_BAD1, _BAD2, _BAD3 = (badmailfrom_step(a) for a in
                       ("spammer@bad.test", "x@badhost.test", "SPAMMER@BAD.TEST"))

DIALOGUES = [
    Dialogue("greeting_quit", ["QUIT", ("closed",)]),
    Dialogue("helo_variants", [
        "HELO", "EHLO", "HELO   ", "HELO client.example.test", "HELO again.example.test",
        "EHLO again.example.test", "helo lower.example.test", "QUIT", ("closed",)]),
    Dialogue("helo_extra_words", ["HELO client.example.test extra words", "QUIT"]),
    Dialogue("ehlo_twice", ["EHLO client.example.test", "EHLO client.example.test", "HELO x",
                            "QUIT", ("closed",)]),
    Dialogue("ehlo_session", [
        "EHLO client.example.test", "MAIL FROM:<a@b.test>", "RCPT TO:<u@foreign.test>",
        "RCPT TO:<blocked@example.test>", "RCPT TO:<>", "DATA", "RSET", "NOOP", "VRFY x",
        "MAIL FROM:<a@b.test> SIZE=100", "RCPT TO:<u@example.test> NOTIFY=NEVER", "FOO",
        "HELP", "QUIT", ("closed",)]),
    Dialogue("mail_syntax", [
        "MAIL FROM:<a@b.test>",
        "HELO client.example.test",
        "MAIL", "MAIL <a@b.test>", "MAIL TO:<a@b.test>", "MAIL FROM",
        "MAIL FROM:a@b.test", "MAIL FROM:<a@b.test", "MAIL FROM:<a@>", "MAIL FROM:<@b.test>",
        "MAIL FROM:<a b@c.test>", "MAIL FROM:<root>", "MAIL FROM:<postmaster>",
        "MAIL FROM:<>", "MAIL FROM:", "MAIL FROM: <a@b.test>", "mail from:<A@B.Test>",
        "MAIL FROM:<\"quoted local\"@b.test>", "MAIL FROM:<@route.test:a@b.test>",
        "MAIL FROM:<a@[192.0.2.1]>", "MAIL FROM:<a@b.test> SIZE=1000",
        "MAIL FROM:<a@b.test> SIZE=1230 CORRECT-WITHOUT-ARG", "MAIL FROM:<a@b.test> BODY=8BITMIME",
        "MAIL FROM:<a@b.test>", "MAIL FROM:<c@d.test>",
        "QUIT"],
        deliberate={
            "MAIL": Deliberate(BARE_VERB, perl=r"501 could not parse your mail from command",
                               ours=r"501 Syntax error in command"),
            "MAIL FROM:<a b@c.test>": Deliberate(QUOTING, perl=re.escape(r'250 <"a\ b"@c.test>' + SENDER_OK),
                                                 ours=re.escape('250 <"a b"@c.test>' + SENDER_OK)),
            'MAIL FROM:<"quoted local"@b.test>': Deliberate(
                QUOTED_SPACE, perl=r"501 could not parse your mail from command",
                ours=re.escape('250 <"quoted local"@b.test>' + SENDER_OK)),
        }),
    Dialogue("envelope_edge_cases", [
        "RCPT FROM:<u@example.test>", "RCPT TO:", "RCPT TO:u@example.test", "RCPT TO:<u@b c>",
        "HELO client.example.test",
        "MAIL FROM:<a@b.test>x", "MAIL FROM:<a@b.test> x", "MAIL FROM:<a@b.test> SIZE=",
        "MAIL FROM:<ask @perl.org>", "MAIL FROM:<a..b@c.test>", "MAIL FROM:<PostMaster>",
        "MAIL FROM:<a@b.test> @bad param", "MAIL FROM:<a@b.test> =x", "MAIL FROM:<a@b.test>  ",
        "MAIL FROM:<a@b.test>", "RCPT TO:", "RCPT TO:abuse", "RCPT TO:postmaster",
        "RCPT TO:<u@example.test>x", "RCPT TO:<u@example.test> x", "RCPT TO:<u@example.test> @b c",
        "MAIL\tFROM:<a@b.test>", "QUIT"],
        deliberate={
            "MAIL FROM:<ask @perl.org>": Deliberate(
                QUOTING, perl=re.escape(r'250 <"ask\ "@perl.org>' + SENDER_OK),
                ours=re.escape('250 <"ask "@perl.org>' + SENDER_OK)),
            "MAIL FROM:<a..b@c.test>": Deliberate(
                QUOTING, perl=re.escape("250 <a..b@c.test>" + SENDER_OK),
                ours=re.escape('250 <"a..b"@c.test>' + SENDER_OK)),
        }),
    Dialogue("rcpt_syntax", [
        "RCPT TO:<u@example.test>",
        "HELO client.example.test",
        "RCPT TO:<u@example.test>",
        "MAIL FROM:<a@b.test>",
        "RCPT", "RCPT <u@example.test>", "RCPT FROM:<u@example.test>", "RCPT TO:u@example.test",
        "RCPT TO:<>", "RCPT TO:<root>", "RCPT TO:<abuse>", "RCPT TO:<postmaster>",
        "RCPT TO:<Postmaster>", "RCPT TO:<u@example.test>", "RCPT TO: <v@EXAMPLE.TEST>",
        "RCPT TO:<u@mx.example.test>", "RCPT TO:<u@a.sub.example.test>",
        "RCPT TO:<u@sub.example.test>", "RCPT TO:<u@foreign.test>",
        "RCPT TO:<u@example.test> NOTIFY=NEVER", "RCPT TO:<u@[192.0.2.1]>",
        "QUIT"],
        deliberate={"RCPT": Deliberate(BARE_VERB, perl=r"501 could not parse recipient",
                                       ours=r"501 Syntax error in command")}),
    Dialogue("relay_by_relayclients", [
        "HELO client.example.test", "MAIL FROM:<a@b.test>", "RCPT TO:<u@foreign.test>",
        "RCPT TO:<u@example.test>", "QUIT"],
        variant="check_relay", env={"TCPREMOTEIP": "192.0.2.77"}, modes=("inetd",)),
    Dialogue("relay_by_octets", [
        "HELO client.example.test", "MAIL FROM:<a@b.test>", "RCPT TO:<u@foreign.test>", "QUIT"],
        env={"TCPREMOTEIP": "198.51.100.20"}, modes=("inetd",)),
    Dialogue("relay_by_env", [
        "HELO client.example.test", "MAIL FROM:<a@b.test>", "RCPT TO:<u@foreign.test>", "QUIT"],
        env={"RELAYCLIENT": "1"}, modes=("inetd",)),
    Dialogue("no_relay", [
        "HELO client.example.test", "MAIL FROM:<a@b.test>", "RCPT TO:<u@foreign.test>", "QUIT"],
        variant="check_relay"),
    Dialogue("no_rcpt_plugin", [
        "HELO client.example.test", "MAIL FROM:<a@b.test>", "RCPT TO:<u@example.test>",
        "DATA", "QUIT"], variant="norcpt"),
    Dialogue("data_sequence", [
        "DATA",
        "HELO client.example.test",
        "DATA",
        "MAIL FROM:<a@b.test>",
        "DATA",
        "RCPT TO:<u@example.test>",
        "DATA", ("data", MSG),
        "DATA",
        "QUIT", ("closed",)]),
    Dialogue("deliver_helo_two_rcpts", [
        "HELO client.example.test", "MAIL FROM:<a@b.test>", "RCPT TO:<u@example.test>",
        "RCPT TO:<postmaster>", "DATA", ("data", MSG), "QUIT"]),
    Dialogue("deliver_ehlo", [
        "EHLO client.example.test", "MAIL FROM:<> BODY=8BITMIME", "RCPT TO:<u@example.test>",
        "DATA", ("data", MSG_NO_ID), "QUIT"]),
    Dialogue("deliver_two_messages", [
        "HELO client.example.test",
        "MAIL FROM:<a@b.test>", "RCPT TO:<u@example.test>", "DATA", ("data", MSG_NO_ID),
        "MAIL FROM:<c@d.test>", "RCPT TO:<v@example.test>", "RCPT TO:<w@sub.example.test>",
        "RCPT TO:<x@a.sub.example.test>", "DATA",
        ("data", "From: c@d.test\nTo: v@example.test\nX-Folded: one\n two\n\nsecond\n\n"),
        "QUIT"]),
    Dialogue("deliver_no_header", [
        "HELO client.example.test", "MAIL FROM:<a@b.test>", "RCPT TO:<u@example.test>",
        "DATA", ("data", "just a body line\n\nand more"), "QUIT"],
        deliberate={("message", 0): Deliberate(
            NO_HEADER, perl=r"(?s)Return-Path: .*\n\nand more\n",
            ours=r"(?s)Return-Path: .*\n\njust a body line\n\nand more\n")}),
    Dialogue("rset_noop_vrfy_help", [
        "RSET", "NOOP", "HELO client.example.test", "MAIL FROM:<a@b.test>", "RSET",
        "RCPT TO:<u@example.test>", "NOOP", "NOOP with args", "VRFY", "VRFY postmaster",
        "HELP", "HELP mail", "RSET extra", "QUIT", ("closed",)]),
    Dialogue("noop_counter", ["HELO client.example.test", "NOOP", "NOOP", "NOOP", ("closed",)]),
    Dialogue("noop_counter_reset", ["NOOP", "NOOP", "HELO client.example.test", "NOOP", "NOOP",
                                    "RSET", "NOOP", "QUIT"]),
    Dialogue("help_plugin", ["HELP", "HELP mail", "HELP data", "HELP bad*name", "QUIT"],
             variant="help"),
    Dialogue("unrecognized_x4", ["FOO", "EXPN postmaster", "STARTTLS", "TURN", ("closed",)]),
    Dialogue("unrecognized_mixed", ["", "BDAT 100", "VERYLONGVERB12X", "HELO x",
                                    "ETRN x", ("closed",)]),
    Dialogue("badmailfrom", [
        "HELO client.example.test", "MAIL FROM:<spammer@bad.test>", "RCPT TO:<u@example.test>",
        "MAIL FROM:<x@badhost.test>", "RCPT TO:<u@example.test>", "RCPT TO:<postmaster>",
        "MAIL FROM:<SPAMMER@BAD.TEST>", "RCPT TO:<u@example.test>",
        "MAIL FROM:<ok@good.test>", "RCPT TO:<u@example.test>", "MAIL FROM:<>",
        "RCPT TO:<u@example.test>", "QUIT"],
        deliberate={1: _BAD1["mail"], 2: _BAD1["rcpt"], 3: _BAD2["mail"], 4: _BAD2["rcpt"],
                    5: _BAD2["rcpt"], 6: _BAD3["mail"], 7: _BAD3["rcpt"]}),
    Dialogue("badrcptto", [
        "HELO client.example.test", "MAIL FROM:<a@b.test>", "RCPT TO:<blocked@example.test>",
        "RCPT TO:<x@blocked.example.test>", "RCPT TO:<BLOCKED@example.test>",
        "RCPT TO:<u@example.test>", "QUIT"]),
    Dialogue("anglebrackets", [
        "HELO client.example.test", "MAIL FROM:a@b.test", "RCPT TO:u@example.test",
        "MAIL FROM:ask@[192.0.2.1]", "MAIL FROM:<a@b.test>", "RCPT TO:<u@example.test>",
        "MAIL FROM:", "MAIL FROM:postmaster", "MAIL FROM:a@b.test SIZE=10",
        "RCPT TO:u@example.test NOTIFY=NEVER", "QUIT"], variant="anglebrackets"),
    Dialogue("databytes", [
        "EHLO client.example.test", "MAIL FROM:<a@b.test> SIZE=100", "RCPT TO:<u@example.test>",
        "DATA", ("data", "Subject: big\n\n" + ("x" * 70 + "\n") * 40),
        "MAIL FROM:<a@b.test> SIZE=999999",
        "QUIT"], variant="databytes",
        deliberate={"MAIL FROM:<a@b.test> SIZE=999999": Deliberate(
            "SIZE is enforced at MAIL; 0.94 accepts any SIZE and checks after DATA",
            perl=re.escape("250 <a@b.test>" + SENDER_OK),
            ours=r"552 Message size exceeds fixed maximum message size")}),
    Dialogue("bare_lf_in_data", [
        "HELO client.example.test", "MAIL FROM:<a@b.test>", "RCPT TO:<u@example.test>", "DATA",
        ("raw", b"Subject: bare\r\n\r\nline one\nline two\r\n.\r\n"), "QUIT"],
        deliberate={
            4: Deliberate("only CRLF line ends are accepted in DATA; 0.94 queues the message",
                          perl=r"250 Queued! ", ours=r"554 Message refused: bare CR or LF line "
                          r"ending; lines must end in CRLF \(RFC 5321 2\.3\.8\)"),
            "count": Deliberate("the message with a bare LF is refused", perl="1", ours="0")}),
    Dialogue("bare_lf_dot", [
        "HELO client.example.test", "MAIL FROM:<a@b.test>", "RCPT TO:<u@example.test>", "DATA",
        ("raw", b"Subject: bare\r\n\r\nbody\r\n.\n", 2), ("idle", 1)],
        deliberate={
            4: Deliberate("only CRLF.CRLF ends DATA: `.` LF is data to us; 0.94 answers 421 barelf",
                          perl=r"421 See http://smtpd\.develooper\.com/barelf\.html", ours=r"<no reply>"),
            "idle": Deliberate("consequence of the line above: 0.94 has closed, we wait for the "
                               "real end of the data", perl=r"<closed>", ours=r"<no reply>")}),
    Dialogue("long_command_line", ["HELO client.example.test", "NOOP " + "x" * 600, "QUIT"],
             deliberate={1: Deliberate(
                 "command lines are limited to 512 octets; 0.94 has no limit",
                 perl=r"250 OK", ours=r"500 5\.5\.2 Line too long")}),
    Dialogue("timeout", ["HELO client.example.test", ("idle", 6)], variant="timeout",
             deliberate={"idle": Deliberate(
                 "a time-out sends 421 with CRLF and runs the disconnect hooks; 0.94 in "
                 "tcpserver mode is killed by SIGALRM and says nothing",
                 perl=r"<closed>",
                 ours=r"421 4\.4\.2 mx\.example\.test Error: timeout exceeded\n<closed>",
                 modes=("inetd",)),
                 ("idle", "forkserver"): Deliberate(
                 "a time-out sends 421 with CRLF and runs the disconnect hooks; 0.94's "
                 "forkserver ends its 421 with a bare LF",
                 perl=r"421 Connection Timed Out \[bare LF\]\n<closed>",
                 ours=r"421 4\.4\.2 mx\.example\.test Error: timeout exceeded\n<closed>",
                 modes=("forkserver",))}),
]


# ---------------------------------------------------------------- running and comparing

def read_reply(client, timeout=REPLY_TIMEOUT):
    """[line, ...] of one (multi-line) reply, '<no reply>' or '<closed>' markers;
    a line that ends in a bare LF is marked ' [bare LF]'."""
    client.sock.settimeout(timeout)
    out = []
    try:
        while True:
            raw = client._readline()
            text = raw.decode("utf-8", "surrogateescape")
            if text.endswith("\r\n"):
                text = text[:-2]
            else:
                text = text[:-1] + " [bare LF]"
            out.append(text)
            if not re.match(r"^\d{3}-", text):
                return out
    except EOFError:
        return out + ["<closed>"]
    except (socket.timeout, TimeoutError):
        return out + ["<no reply>"]
    except OSError:
        # a reset and an EOF are the same observation: the peer hung up
        # (which one the client sees depends on timing, not on the server)
        return out + ["<closed>"]


def is_closed(client, timeout=3):
    client.sock.settimeout(timeout)
    try:
        while True:
            data = client.sock.recv(65536)
            if not data:
                return ["<closed>"]
            client.buf += data
            return [f"<unexpected data {data!r}>"]
    except (socket.timeout, TimeoutError):
        return ["<open>"]
    except OSError:
        return ["<closed>"]


def run_dialogue(server, dialogue):
    """[(label, [reply lines])] for one session."""
    client = server.connect(dialogue.env)
    transcript = []
    try:
        transcript.append(("(connect)", read_reply(client)))
        for step in dialogue.steps:
            if isinstance(step, str):
                label = f"C: {step[:80]}" + (f"... ({len(step)} chars)" if len(step) > 80 else "")
                try:
                    client.send(step + "\r\n")
                except OSError:
                    transcript.append((label, ["<closed>"]))   # peer hung up earlier
                    continue
                transcript.append((label, read_reply(client)))
            elif step[0] == "data":
                wire = "".join(("." + l if l.startswith(".") else l) + "\r\n"
                               for l in step[1].split("\n")) + ".\r\n"
                client.send(wire)
                transcript.append((f"C: <message, {len(wire)} octets>", read_reply(client)))
            elif step[0] == "raw":
                client.send(step[1])
                wait = step[2] if len(step) > 2 else REPLY_TIMEOUT
                transcript.append((f"C: {step[1]!r}", read_reply(client, timeout=wait)))
            elif step[0] == "closed":
                transcript.append(("(server closed?)", is_closed(client)))
            elif step[0] == "idle":
                lines = read_reply(client, timeout=step[1])
                if lines and lines[-1] not in ("<closed>", "<no reply>"):
                    lines += is_closed(client, timeout=2)
                transcript.append((f"(idle {step[1]} s)", lines))
            else:
                raise ValueError(step)
    finally:
        client.close()
    return transcript


_ENH = re.compile(r"^(\d{3}[ -])([245]\.\d{1,3}\.\d{1,3})(?: |$)")


def normalise_common(line, mode):
    line = re.sub(r"qpsmtpd_py([ /])[0-9][\w.+-]*", r"qpsmtpd\1<VERSION>", line)
    line = re.sub(r"qpsmtpd([ /])0\.94\b", r"qpsmtpd\1<VERSION>", line)
    if mode == "forkserver":
        line = re.sub(r" Hi \S+ \[", " Hi <remote_info> [", line)
    return line


def rebuild(lines):
    """Fix the continuation marks of a reply after lines were dropped."""
    codes = [l for l in lines if re.match(r"^\d{3}[ -]", l)]
    if len(codes) != len(lines):
        return lines
    last = len(lines) - 1
    return [l[:3] + ("-" if i < last else " ") + l[4:] for i, l in enumerate(lines)]


def normalise(perl_t, ours_t, mode):
    """Both transcripts normalised (see the module docstring), in step order."""
    perl_out, ours_out = [], []
    ehlo = False                          # our replies carry enhanced codes after this
    for (label, p_lines), (_l2, o_lines) in zip(perl_t, ours_t):
        p_lines = [normalise_common(l, mode) for l in p_lines]
        o_lines = [normalise_common(l, mode) for l in o_lines]
        is_ehlo = label.upper().startswith("C: EHLO ")
        if is_ehlo and o_lines and o_lines[0].startswith("250"):
            # keywords we add on purpose (README): ENHANCEDSTATUSCODES, SMTPUTF8
            o_lines = rebuild([l for l in o_lines if l[4:] not in ("ENHANCEDSTATUSCODES", "SMTPUTF8")])
        elif ehlo:
            stripped = []
            for i, line in enumerate(o_lines):
                m = _ENH.match(line)
                p_line = p_lines[i] if i < len(p_lines) else ""
                if m and not p_line.startswith(m.group(0)):
                    line = m.group(1) + line[len(m.group(0)):]
                stripped.append(line)
            o_lines = stripped
        if is_ehlo and o_lines and o_lines[0].startswith("250"):
            ehlo = True
        perl_out.append((label, p_lines))
        ours_out.append((label, o_lines))
    return perl_out, ours_out


def step_index(dialogue, key):
    """Transcript index of a Dialogue.deliberate key (entry 0 is the greeting)."""
    if isinstance(key, tuple):
        key = key[0]
    if key == "idle":
        return len(dialogue.steps)
    if isinstance(key, int):
        return key + 1
    return dialogue.steps.index(key) + 1


def check_deliberate(d, where, perl_text, ours_text, problems):
    for side, got, pattern in (("Perl", perl_text, d.perl), ("ours", ours_text, d.ours)):
        if not re.fullmatch(pattern, got):
            problems.append(f"deliberate difference at {where} ({d.reason}):\n"
                            f"  {side} gave {got!r}, expected /{pattern}/")
    return f"<deliberate: {d.reason}>"


def apply_deliberate(dialogue, mode, perl_t, ours_t):
    """Check the deliberate differences of the replies and mark them in both transcripts."""
    problems = []
    for key, d in dialogue.deliberate.items():
        if mode not in d.modes or key == "count" or (isinstance(key, tuple) and key[0] == "message"):
            continue
        i = step_index(dialogue, key)
        mark = check_deliberate(d, repr(perl_t[i][0]), "\n".join(perl_t[i][1]),
                                "\n".join(ours_t[i][1]), problems)
        perl_t[i] = ours_t[i] = (perl_t[i][0], [mark])
    return problems


def render(transcript):
    out = []
    for label, lines in transcript:
        out.append(label)
        out.extend("S: " + l for l in lines)
    return out


_DATE = re.compile(r"; [A-Z][a-z]{2}, \d{1,2} [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4}$")


def normalise_message(data, mode, perl):
    """The delivered file as lines: Received date, product and (forkserver) the
    client's name normalised. Perl's Delivered-To lines are put back in recipient
    order: 0.94's queue/maildir prepends one per recipient, so they come out
    reversed; ours writes them in recipient order (README)."""
    lines = data.decode("utf-8", "surrogateescape").split("\n")
    out = []
    for line in lines:
        line = normalise_common(line, mode)
        line = _DATE.sub("; <DATE>", line)
        if mode == "forkserver":
            line = re.sub(r"^Received: from \S+ \(HELO", "Received: from <remote_info> (HELO", line)
        out.append(line)
    if perl:
        first = next((i for i, l in enumerate(out) if l.startswith("Delivered-To: ")), None)
        if first is not None:
            last = first
            while last < len(out) and out[last].startswith("Delivered-To: "):
                last += 1
            out[first:last] = reversed(out[first:last])
    return out


def new_messages(cfg, before):
    new = os.path.join(cfg.maildir, "new")
    names = sorted(set(os.listdir(new)) - before) if os.path.isdir(new) else []
    names.sort(key=lambda n: os.stat(os.path.join(new, n)).st_mtime_ns)
    out = []
    for name in names:
        with open(os.path.join(new, name), "rb") as fh:
            out.append((name, fh.read()))
    return out


def maildir_names(cfg):
    new = os.path.join(cfg.maildir, "new")
    return set(os.listdir(new)) if os.path.isdir(new) else set()


def compare(dialogue, mode, perl_server, our_server):
    """Run the dialogue on both servers; (problems, Perl lines, our lines)."""
    before = (maildir_names(perl_server.cfg), maildir_names(our_server.cfg))
    perl_raw = run_dialogue(perl_server, dialogue)
    ours_raw = run_dialogue(our_server, dialogue)
    perl_t, ours_t = normalise(perl_raw, ours_raw, mode)
    problems = apply_deliberate(dialogue, mode, perl_t, ours_t)
    left, right = render(perl_t), render(ours_t)
    # the Maildir files delivered in this session: Return-Path, Delivered-To, Received ...
    perl_msgs = new_messages(perl_server.cfg, before[0])
    our_msgs = new_messages(our_server.cfg, before[1])
    count = (f"== {len(perl_msgs)} message(s) delivered", f"== {len(our_msgs)} message(s) delivered")
    d = dialogue.deliberate.get("count")
    if d is not None and mode in d.modes:
        count = (check_deliberate(d, "the number of messages delivered", str(len(perl_msgs)),
                                  str(len(our_msgs)), problems),) * 2
    left.append(count[0])
    right.append(count[1])
    for n, ((pname, pdata), (oname, odata)) in enumerate(zip(perl_msgs, our_msgs)):
        p_lines = normalise_message(pdata, mode, perl=True)
        o_lines = normalise_message(odata, mode, perl=False)
        d = dialogue.deliberate.get(("message", n))
        if d is not None and mode in d.modes:
            p_lines = o_lines = [check_deliberate(d, f"delivered message {n}", "\n".join(p_lines),
                                                  "\n".join(o_lines), problems)]
        left += [f"-- message {n}:"] + p_lines
        right += [f"-- message {n}:"] + o_lines
        for name in (pname, oname):
            if not re.fullmatch(r"\d+\.P\d+M\d+Q\d+\.[\w.-]+", name):
                problems.append(f"Maildir file name {name!r} is not TIME.PpidMusecQn.HOST")
    if left != right:
        diff = "\n".join(difflib.unified_diff(left, right, "perl qpsmtpd 0.94", "qpsmtpd_py",
                                              lineterm="", n=3))
        problems.append(f"transcripts differ ({mode} mode, dialogue {dialogue.name}):\n{diff}")
    return problems, left, right


# ---------------------------------------------------------------- the tests

class Pair:
    def __init__(self, base, mode, variant):
        self.perl_cfg = make_side(base, "perl", variant)
        self.our_cfg = make_side(base, "py", variant)
        cls = InetdServer if mode == "inetd" else ForkServer
        self.perl = cls(self.perl_cfg, perl=True)
        try:
            self.ours = cls(self.our_cfg, perl=False)
        except Exception:
            self.perl.stop()
            raise

    def stop(self):
        self.perl.stop()
        self.ours.stop()


@pytest.fixture(scope="module")
def servers(tmp_path_factory, perl_ok):
    """(mode, variant) -> Pair, started on first use, stopped at the end."""
    pairs = {}

    def get(mode, variant):
        key = (mode, variant)
        if key not in pairs:
            pairs[key] = Pair(tmp_path_factory.mktemp(f"diff-{mode}-{variant}"), mode, variant)
        return pairs[key]
    yield get
    for pair in pairs.values():
        pair.stop()


CASES = [pytest.param(mode, d, id=f"{mode}-{d.name}")
         for mode in ("inetd", "forkserver") for d in DIALOGUES if mode in d.modes]


@pytest.mark.parametrize("mode,dialogue", CASES)
def test_same_replies_as_perl(servers, mode, dialogue):
    pair = servers(mode, dialogue.variant)
    problems, left, right = compare(dialogue, mode, pair.perl, pair.ours)
    if problems:
        pytest.fail("\n\n".join(problems) + "\n\nPerl transcript (normalised):\n"
                    + "\n".join(left), pytrace=False)


def test_perl_dns_goes_to_the_shim(servers):
    """Perl's forkserver looks up every client's PTR through /etc/resolv.conf, -H or
    not: the lookup must have been answered by t/perlshim/NoDNS.pm (no packet sent)."""
    pair = servers("forkserver", "base")
    client = pair.perl.connect()
    assert read_reply(client)[0].startswith("220 ")
    client.send("HELO client.example.test\r\n")
    assert "Hi Unknown [127.0.0.1]" in read_reply(client)[0]
    client.send("QUIT\r\n")
    read_reply(client)
    client.close()
    deadline = time.monotonic() + 5
    while "NoDNS: blocked Net::DNS::Resolver->query 127.0.0.1 PTR" not in pair.perl.read_log():
        assert time.monotonic() < deadline, pair.perl.read_log()
        time.sleep(0.05)
