"""Declared plugin arguments (qpsmtpd_py/arguments.py) as an admin meets them: a
good config/plugins line reaches the plugin parsed, a bad one stops the server
before it greets anyone, naming config/plugins:line, the plugin, the argument and
what it accepts; qpsmtpd-doc lists the declarations. Also the loader's handling of
Perl plugin files (Debian's plugin_dirs) and of plugin files that cannot load."""

import os
import shutil
import subprocess
import sys

import pytest

from harness import QPSMTPD, REAL_PLUGINS, TEST_PLUGINS

PERL_PLUGINS = "/usr/share/qpsmtpd/plugins"          # Debian's qpsmtpd package
QPSMTPD_DOC = os.path.join(os.path.dirname(sys.executable), "qpsmtpd-doc")


@pytest.fixture
def config(mail_config):
    return lambda plugins, files=None: mail_config(plugins=plugins, files=files)


def start_fails(srv):
    """Run `qpsmtpd` (one session on stdin/stdout) expecting it to refuse to start."""
    proc = subprocess.run([QPSMTPD], stdin=subprocess.DEVNULL, capture_output=True,
                          env=srv.env(), cwd=srv.tmp, timeout=30)
    assert proc.returncode != 0, proc
    assert proc.stdout == b"", "a server that cannot start must not greet"
    return proc.stderr.decode()


def rcpt_reply(srv):
    with srv.session() as c:
        assert c.code == 220, c.text
        c.cmd("HELO client.test")
        c.cmd("MAIL FROM:<a@b.test>")
        return c.cmd("RCPT TO:<u@example.test>")


# -- a good line reaches the plugin parsed ------------------------------------------------

def test_declared_arguments_reach_the_plugin_parsed(config):
    srv = config(["t_args /srv/x verbose 5 DELAY 2.5 only yes mode QUICK stage data stage connect "
                  "level LOGINFO domains A.example,b.example name abc reject_type disconnect "
                  "cmd_help help.txt loglevel +1"])
    code, text = rcpt_reply(srv)
    assert code == 550
    assert text == ("args: CMD=cmd_help:help.txt count=5 dir=/srv/x domains=a.example,b.example "
                    "level=6 loglevel=+1 mode=fast name=abc only=True reject_type=disconnect "
                    "stage=DATA,CONNECT verbose=True wait=2.5"), text


def test_defaults_fill_what_the_line_leaves_out(config):
    code, text = rcpt_reply(config(["t_args /srv/x"]))
    assert text == ("args: CMD= count=3 dir=/srv/x domains= level=None loglevel=None mode=slow "
                    "name=x only=False reject_type=temp stage=CONNECT verbose=False wait=1.0"), text


# -- a bad line stops start-up with file:line and what is accepted ---------------------------

@pytest.mark.parametrize("line, words", [
    # unknown keyword, with the accepted ones and a close match
    ("t_args /srv/x mdoe fast", ["count 'mdoe': expected an integer 1-9",
                                 "did you mean the keyword 'mode'?"]),
    ("t_args /srv/x 4 mdoe fast", ["unexpected argument 'mdoe'", "usage: t_args dir [count]"]),
    ("tarpit aftr 2", ["tarpit: unknown argument keyword 'aftr'", "did you mean 'after'?",
                       "tarpit accepts: after, delay, loglevel, max_delay, max_total"]),
    # issue 8 point 5: qpsmtpd and qpsmtpd_py used to ignore these silently
    ("check_earlytalker acton log", ["check_earlytalker: unknown argument keyword 'acton'",
                                     "did you mean 'action'?"]),
    ("relay bogus_arg 1", ["relay: unknown argument keyword 'bogus_arg'",
                           "relay accepts: loglevel, only"]),
    ("rcpt_ok 1", ["rcpt_ok: unknown argument keyword '1' (rcpt_ok accepts: loglevel)"]),
    ("tarpit after 2 after 3", ["tarpit: after is given twice ('2' and '3')"]),
    # odd word count: a keyword without its value
    ("tarpit after 2 delay", ["tarpit: 'delay' needs a value", "keyword/value pairs",
                              "the line has 3 words"]),
    # bad values: int bounds, number, bool, choice, pattern, log level
    ("tarpit after 0", ["tarpit: after '0': expected an integer >= 1"]),
    ("tarpit delay soon", ["tarpit: delay 'soon': expected a number >= 0"]),
    ("t_args /srv/x only maybe", ["only 'maybe': expected 0 or 1"]),
    ("t_args /srv/x mode warp", ["mode 'warp': expected one of fast, slow"]),
    ("t_args /srv/x name ABC", ["name 'ABC': expected lower-case letters"]),
    ("t_args /srv/x 10", ["count '10': expected an integer 1-9"]),
    ("t_args /srv/x reject_type later", ["reject_type 'later': expected one of perm, temp"]),
    ("tarpit loglevel loud", ["tarpit: loglevel 'loud': expected a log level"]),
    # missing required positional argument
    ("t_args verbose", ["t_args: missing argument dir (a directory)"]),
])
def test_bad_arguments_stop_start_up(config, line, words):
    srv = config(["rcpt_ok"])
    srv.write("plugins", f"# plugins\nrcpt_ok\n{line}\n")
    err = start_fails(srv)
    assert f"{srv.dir}/plugins:3: " in err, err
    for word in words:
        assert word in err, err


def test_debian_style_lines_still_load(config):
    """Upstream's argument spellings keep working: Debian's default lines, the legacy
    positional forms, case-insensitive keywords, aliases."""
    srv = config(["check_earlytalker action log wait 0", "check_relay", "helo DNS_TIMEOUT 2",
                  "count_unrecognized_commands 4", "connection_time LOGNOTICE",
                  "check_validrcptto_cdb /nonexistent/validrcptto.cdb ext_sep +", "loop 30",
                  "check_loop max_hops 40", "rcpt_ok"])
    with srv.session() as c:
        assert c.code == 220, c.text
        assert c.cmd("HELO client.test")[0] == 250


def test_an_undeclared_plugin_keeps_its_own_parsing(config):
    """Third-party plugins without `arguments` get key/value pairs as before."""
    srv = config(["t_return rcpt DENY no thanks"])
    assert rcpt_reply(srv) == (550, "no thanks")


# -- qpsmtpd-doc lists the declarations ----------------------------------------------------

@pytest.mark.no_services
def test_qpsmtpd_doc_lists_declared_arguments():
    out = subprocess.run([QPSMTPD_DOC, "tarpit"], capture_output=True, text=True, check=True).stdout
    manual, _, listing = out.partition("Declared arguments")
    assert manual.startswith("tarpit - slow the SMTP conversation down")
    lines = listing.splitlines()
    assert "  tarpit [after N] [delay N] [max_delay N] [max_total N] [loglevel LEVEL]" in lines
    after = next(i for i, l in enumerate(lines) if l.lstrip().startswith("after N"))
    assert "integer >= 1; default 1" in lines[after]
    assert "the tarpit starts after the N-th error" in lines[after + 1]
    assert any(l.lstrip().startswith("loglevel LEVEL") for l in lines)


@pytest.mark.no_services
def test_qpsmtpd_doc_shows_positional_and_flags():
    out = subprocess.run([QPSMTPD_DOC, "--plugin-dir", TEST_PLUGINS, "t_args"],
                         capture_output=True, text=True, check=True).stdout
    assert "  t_args dir [count] [wait N] [only 0|1] [mode fast|slow]" in out
    assert "also written delay" in out and "repeatable" in out
    assert any(l.strip().startswith("verbose") and "a word on its own" in l for l in out.splitlines())
    assert any(l.strip().startswith("dir") and "positional; required" in l for l in out.splitlines())


# -- Perl plugin files (Debian's /etc/qpsmtpd points plugin_dirs at them) --------------------

@pytest.fixture
def perl_dir():
    if not os.path.isfile(os.path.join(PERL_PLUGINS, "rcpt_ok")):
        pytest.skip(f"{PERL_PLUGINS} missing: apt-get install qpsmtpd")
    return PERL_PLUGINS


def test_perl_plugin_dir_first_loads_our_plugins_and_logs_the_skip(config, perl_dir):
    srv = config(["check_relay", "rcpt_ok", "rcpt_ok:2"], files={"plugin_dirs": [perl_dir]})
    c = srv.session()
    with c:
        assert c.code == 220, c.text
        c.cmd("HELO client.test")
        c.cmd("MAIL FROM:<a@b.test>")
        assert c.cmd("RCPT TO:<u@example.test>")[0] == 250
        assert c.cmd("RCPT TO:<u@elsewhere.test>")[0] == 550      # our rcpt_ok at work
    err = c.stderr
    skip = (f"skipping Perl plugin {perl_dir}/rcpt_ok (qpsmtpd_py runs only Python plugins); "
            f"using qpsmtpd_py's own rcpt_ok ({REAL_PLUGINS}/rcpt_ok.py)")
    assert err.count(skip) == 1, err                 # once per file, not per instance
    # check_relay is Debian's wrapper around relay: both Perl files are skipped
    assert f"skipping Perl plugin {perl_dir}/check_relay " in err, err
    assert f"skipping Perl plugin {perl_dir}/relay " in err, err
    assert "unterminated string" not in err and "SyntaxError" not in err


def test_debian_logging_line_with_perl_plugin_dir(config, perl_dir, tmp_path):
    """Debian's config/logging line: the Perl logging/file is skipped for ours, which then
    receives the later skip lines."""
    log = tmp_path / "qpsmtpd.log"
    srv = config(["rcpt_ok"], files={"plugin_dirs": [perl_dir],
                                     "logging": f"logging/file loglevel LOGINFO {log}"})
    c = srv.session()
    with c:
        assert c.code == 220
    assert f"skipping Perl plugin {perl_dir}/logging/file " in c.stderr, c.stderr
    assert f"skipping Perl plugin {perl_dir}/rcpt_ok " in log.read_text()


def test_perl_plugin_without_a_python_one_names_the_perl_file(config, perl_dir, tmp_path):
    # a real qpsmtpd plugin file (Perl) under a name qpsmtpd_py has no plugin for
    perl_only = tmp_path / "perl-only"
    perl_only.mkdir()
    shutil.copy(os.path.join(perl_dir, "rcpt_ok"), perl_only / "perl_only_filter")
    srv = config(["rcpt_ok"], files={"plugin_dirs": [str(perl_only), perl_dir]})
    srv.write("plugins", "rcpt_ok\nperl_only_filter\n")
    err = start_fails(srv)
    assert f"{srv.dir}/plugins:2: " in err, err
    assert f"{perl_only}/perl_only_filter is a Perl plugin" in err, err
    assert "qpsmtpd_py has no plugin named perl_only_filter" in err, err


def test_later_plugin_dir_wins_over_a_perl_file(config, perl_dir, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "rcpt_ok.py").write_text(
        "from qpsmtpd_py.api import DENY, Plugin\n"
        "class Mine(Plugin):\n    arguments = ()\n"
        "    def hook_rcpt(self, txn, rcpt, params):\n        return DENY, 'mine'\n")
    srv = config(["rcpt_ok"], files={"plugin_dirs": [perl_dir, str(mine)]})
    assert rcpt_reply(srv) == (550, "mine")


# -- plugin files that cannot load name the file ---------------------------------------------

@pytest.mark.parametrize("source, words", [
    ("def oops(:\n    pass\n", [":1: syntax error"]),
    ("import no_such_module_here\n", [": ModuleNotFoundError: No module named 'no_such_module_here'"]),
    ("x = 1\n", ["a plugin file must define exactly one Plugin subclass"]),
    ("from qpsmtpd_py.api import isa_plugin\nclass X(isa_plugin('no_such_base')):\n    pass\n",
     [": LookupError: ", "no_such_base not found"]),
])
def test_plugin_load_errors_name_the_file(config, tmp_path, source, words):
    broken = tmp_path / "broken_plugins"
    broken.mkdir()
    (broken / "t_broken.py").write_text(source)
    srv = config(["rcpt_ok"], files={"plugin_dirs": [str(broken), TEST_PLUGINS, REAL_PLUGINS]})
    srv.write("plugins", "rcpt_ok\nt_broken\n")
    err = start_fails(srv)
    assert f"{srv.dir}/plugins:2: cannot load plugin 't_broken': {broken}/t_broken.py" in err, err
    for word in words:
        assert word in err, err
