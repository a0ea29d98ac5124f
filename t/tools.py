"""The programs outside Python that the tests run, how to see that each one *works*
(a binary that exists can still be useless: fortune without a database, Perl qpsmtpd
without Net::IP), and what to install when it does not.

scripts/test probes every one of them before pytest starts (t/services/check-services.py),
so a missing package stops the run with its name.  A test that needs a tool says so:

    from tools import require_tool
    require_tool("swaks")        # skip, or fail under CI=true, unless swaks works

A new tool goes into TOOLS, never into a bare shutil.which() check.
"""

import os
import shutil
import socket
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PERL_SHIM = os.path.join(HERE, "perlshim")
PERL_PLUGINS = "/usr/share/qpsmtpd/plugins"


def _run(argv, input=None, timeout=30):
    """(why it failed or None, stdout) of argv, which must exit 0."""
    try:
        r = subprocess.run(argv, input=input, capture_output=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"`{' '.join(argv)}`: {e}", ""
    out = r.stdout.decode("utf-8", "replace")
    if r.returncode != 0:
        err = (out + r.stderr.decode("utf-8", "replace")).strip()
        return f"`{' '.join(argv)}` exited {r.returncode}: {err[-400:]}", out
    return None, out


def _prints(argv, text):
    """A probe: argv exits 0 and prints `text` (on stdout or stderr)."""
    def probe():
        try:
            r = subprocess.run(argv, capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"`{' '.join(argv)}`: {e}"
        out = (r.stdout + r.stderr).decode("utf-8", "replace")
        if r.returncode != 0 or text not in out:
            said = f" without {text!r}" if text else ""
            return f"`{' '.join(argv)}` exited {r.returncode}{said}: {out.strip()[-400:]}"
        return None
    return probe


def sbin(name):
    """Path of a program that may live in an sbin directory outside the caller's PATH."""
    return shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/sbin/{name}")
                                       if os.access(p, os.X_OK)), name)


def exim_bin():
    """The exim binary that start-services.sh unpacked (QPT_EXIM_BIN in services.env)."""
    return os.environ.get("QPT_EXIM_BIN") or os.environ.get("EXIM_BIN")


def perl_command(*argv):
    """Debian's Perl qpsmtpd as the tests run it: taint mode, and NoDNS.pm so that no
    resolver query leaves the machine (t/perlshim)."""
    return ["perl", "-T", "-I", PERL_SHIM, "-MNoDNS", *argv]


# ---------------------------------------------------------------- probes
def _fortune():
    why, out = _run(["/usr/games/fortune", "-s"])
    return why or (None if out.strip() else "`/usr/games/fortune -s` printed nothing")


def _perl_qpsmtpd():
    """One session with Perl qpsmtpd 0.94 (the inetd shim of the differential test, the
    same plugins): it must greet with 220 and answer EHLO and QUIT."""
    from harness import Client, ConfigDir  # harness imports this module
    import pathlib
    with tempfile.TemporaryDirectory(prefix="qpt-perl-probe.") as tmp:
        cfg = ConfigDir(pathlib.Path(tmp), plugins=["relay", "badmailfrom", "rcpt_ok",
                                                    "queue/maildir {maildir}"])
        cfg.write("plugin_dirs", PERL_PLUGINS)
        ours, theirs = socket.socketpair()
        try:
            proc = subprocess.Popen(perl_command(os.path.join(PERL_SHIM, "qpsmtpd-inetd")),
                                    stdin=theirs, stdout=theirs, stderr=subprocess.PIPE,
                                    env=cfg.env({"TCPREMOTEIP": "192.0.2.10"}), cwd=tmp)
        except OSError as e:
            ours.close()
            return f"perl: {e}"
        finally:
            theirs.close()
        replies = []
        with Client(ours, proc, timeout=15) as c:
            try:
                replies.append(c.read_reply()[0])
                replies.append(c.cmd("EHLO probe.example.test")[0])
                replies.append(c.cmd("QUIT")[0])
            except (OSError, EOFError, ValueError) as e:
                replies.append(f"{type(e).__name__}: {e}")
        if replies != [220, 250, 221]:
            return (f"Perl qpsmtpd (t/perlshim/qpsmtpd-inetd) answered {replies} instead of "
                    f"[220, 250, 221]; its log: {c.stderr.strip()[-600:]}")
    return None


def _cdb():
    with tempfile.TemporaryDirectory(prefix="qpt-cdb-probe.") as tmp:
        path = os.path.join(tmp, "probe.cdb")
        why, _ = _run(["cdb", "-c", "-m", path], input=b"key value\n")
        if why:
            return why
        why, out = _run(["cdb", "-q", path, "key"])
        return why or (None if out == "value" else f"`cdb -q` read {out!r}, not 'value'")


def _systemd_analyze():
    with tempfile.TemporaryDirectory(prefix="qpt-unit-probe.") as tmp:
        unit = os.path.join(tmp, "qpt-probe.service")
        with open(unit, "w") as fh:
            fh.write("[Unit]\nDescription=probe\n[Service]\nExecStart=/bin/true\n")
        return _run(["systemd-analyze", "verify", unit])[0]


def _man():
    """`man -l` renders a page (the manual pages scripts/install makes, t/test_install.py)."""
    with tempfile.TemporaryDirectory(prefix="qpt-man-probe.") as tmp:
        page = os.path.join(tmp, "probe.1")
        with open(page, "w") as fh:
            fh.write('.TH PROBE 1\n.SH NAME\nprobe \\- a probe\n.SH OPTIONS\n.TP\n\\fB\\-\\-flag\\fR\nworks\n')
        return _prints(["man", "--warnings=w", "-l", page], "--flag")()


def _smtp_sink():
    """smtp-sink on a free port greets with 220 (the way test_queue_smtp_forward runs it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    try:
        proc = subprocess.Popen([sbin("smtp-sink"), "-u", "nobody", "-h", "probe.example.test",
                                 f"127.0.0.1:{port}", "2"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
    except OSError as e:
        return f"smtp-sink: {e}"
    try:
        from harness import wait_for_port
        if not wait_for_port("127.0.0.1", port, timeout=10):
            return f"smtp-sink does not listen on 127.0.0.1:{port}"
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            greeting = c.makefile("rb").readline()
        return None if greeting.startswith(b"220 ") else f"smtp-sink greeted {greeting!r}"
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def _exim():
    """The unpacked exim reads a config of its own (-C, as the tests run it) and says its version."""
    path = exim_bin()
    if not path:
        return "QPT_EXIM_BIN is not set (the exim component of t/services/start-services.sh)"
    with tempfile.TemporaryDirectory(prefix="qpt-exim-probe.") as tmp:
        conf = os.path.join(tmp, "exim.conf")
        with open(conf, "w") as fh:
            fh.write(f"primary_hostname = probe.example.test\nspool_directory = {tmp}/spool\n")
        return _prints([path, "-C", conf, "-bV"], "Exim version")()


def _nmap():
    """nmap runs and has the smtp-open-relay script (t/test_open_relay_nmap.py)."""
    why = _prints(["nmap", "--version"], "Nmap version")()
    script = "/usr/share/nmap/scripts/smtp-open-relay.nse"
    return why or (None if os.path.exists(script) else f"{script} is missing")


# name -> (what to install, probe: None when the tool works, else why not)
TOOLS = {
    "fortune": ("apt-get install fortune-mod fortunes-min", _fortune),
    "perl Net::IP": ("apt-get install libnet-ip-perl", _prints(["perl", "-MNet::IP", "-e1"], "")),
    "perl qpsmtpd": ("apt-get install qpsmtpd libnet-ip-perl", _perl_qpsmtpd),
    "swaks": ("apt-get install swaks", _prints(["swaks", "--version"], "swaks version")),
    "msmtp": ("apt-get install msmtp", _prints(["msmtp", "--version"], "msmtp version")),
    "openssl": ("apt-get install openssl", _prints(["openssl", "version"], "OpenSSL")),
    "cdb": ("apt-get install tinycdb", _cdb),
    "systemd-analyze": ("apt-get install systemd", _systemd_analyze),
    "man": ("apt-get install man-db groff-base", _man),
    "smtp-sink": ("apt-get install postfix", _smtp_sink),
    "postfix": ("apt-get install postfix", _prints([sbin("postconf"), "-d", "mail_version"], "mail_version")),
    "exim": ("bash t/services/start-services.sh STATE exim (unpacks exim4-daemon-light)", _exim),
    "haproxy": ("apt-get install haproxy", _prints([sbin("haproxy"), "-v"], "HAProxy version")),
    "clamscan": ("apt-get install clamav", _prints(["clamscan", "--version"], "ClamAV")),
    "clamdscan": ("apt-get install clamdscan", _prints(["clamdscan", "--version"], "ClamAV")),
    "nmap": ("apt-get install nmap", _nmap),
    "testssl.sh": ("apt-get install testssl.sh", _prints(["testssl", "--version"], "testssl")),
}

_PROBED = {}


def tool_problem(name):
    """None when tool `name` works here, else why not and what to install (probed once)."""
    if name not in _PROBED:
        install, probe = TOOLS[name]
        why = probe()
        _PROBED[name] = why and f"{name} does not work: {why}\n  fix: {install}"
    return _PROBED[name]


def require_tool(name):
    """Skip the test unless tool `name` works; under CI=true fail instead, because
    scripts/test installs every tool and a skip would hide a missing one."""
    import pytest
    why = tool_problem(name)
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
