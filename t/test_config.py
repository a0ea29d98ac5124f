"""Config files as qpsmtpd reads them: trimming, comments, `$include`, the
per-name directory lookup, cdb maps, and start-up errors that name file and line."""

import os
import socket
import subprocess

import pytest

from harness import PLUGIN_DIRS, QPSMTPD, Client, ConfigDir



@pytest.fixture
def config(make_config):
    """Like mail_config, but with no rcpthosts: rcpt_ok then takes mail for `me`."""
    def make(plugins=("rcpt_ok", "queue/maildir {maildir}"), files=None):
        return make_config(plugins=plugins, files={"plugin_dirs": PLUGIN_DIRS, **(files or {})})
    return make


def start_fails(srv, env=None):
    """Run the server expecting it to refuse to start; returns its stderr."""
    proc = subprocess.run([QPSMTPD], stdin=subprocess.DEVNULL, capture_output=True,
                          env=srv.env(env), cwd=srv.tmp, timeout=30)
    assert proc.returncode != 0, proc
    assert proc.stdout == b"", "no greeting may be sent by a server that cannot start"
    return proc.stderr.decode()


def rcpt_codes(srv, recipients, env=None):
    with srv.session(env=env) as c:
        assert c.code == 220, c.text
        c.cmd("HELO client.test")
        c.cmd("MAIL FROM:<a@b.test>")
        return [c.cmd(f"RCPT TO:<{r}>")[0] for r in recipients]


def test_comments_blank_lines_and_whitespace(config):
    srv = config(files={"rcpthosts": "# our domains\n\n   example.test   \n\t# not.test\n\tother.test\t\n  \n"})
    srv.write("plugins", f"# plugins\n\n   rcpt_ok   \n  # t_return rcpt DENY\n"
                         f"\tqueue/maildir   {srv.maildir}  \n")
    assert rcpt_codes(srv, ["u@example.test", "u@other.test", "u@not.test"]) == \
        [250, 250, 550]


def test_first_line_is_the_value(config):
    srv = config(files={"smtpgreeting": "\n# comment\n  first greeting  \nsecond greeting\n"})
    with srv.session() as c:
        assert c.text == "first greeting ESMTP"


def test_include_file_and_directory(config, tmp_path):
    hosts_dir = tmp_path / "hosts.d"
    hosts_dir.mkdir()
    (hosts_dir / "10-a").write_text("a.test\n# comment\n")
    (hosts_dir / "20-b").write_text("b.test\n")
    (hosts_dir / ".hidden").write_text("hidden.test\n")
    other = tmp_path / "extra_hosts"
    other.write_text("abs.test\n")
    srv = config(files={
        "rcpthosts": f"example.test\n$include more_hosts\n$include {hosts_dir}\n$include {other}\n"
                     "$include missing_file\n",
        "more_hosts": "rel.test\n",
    })
    assert rcpt_codes(srv, ["u@example.test", "u@rel.test", "u@a.test", "u@b.test", "u@abs.test",
                            "u@hidden.test", "u@missing.test"]) == [250] * 5 + [550, 550]


def test_include_in_plugins_file(config, tmp_path):
    srv = config()
    srv.write("queue_method", f"queue/maildir {srv.maildir}")
    srv.write("plugins", "rcpt_ok\n$include queue_method\n")
    with srv.session(env={}) as c:
        code, text = c.send_message("a@b.test", ["u@mx.example.test"], "Subject: i\n\nincluded")
        assert code == 250, text
    assert len(srv.messages()) == 1


def test_circular_include_is_survived(config):
    srv = config(files={"rcpthosts": "example.test\n$include loop_a\n", "loop_a": "a.test\n$include loop_b\n",
                        "loop_b": "b.test\n$include loop_a\n"})
    assert rcpt_codes(srv, ["u@example.test", "u@a.test", "u@b.test"]) == [250, 250, 250]


def test_lookup_order_per_name(config, tmp_path):
    """$QPSMTPD_CONFIG first, then ./config, name by name (as qpsmtpd)."""
    srv = config(files={"rcpthosts": "cwd.test"})           # written to <tmp>/config = ./config
    alt = tmp_path / "alt"
    alt.mkdir()
    for name in ("me", "plugins", "plugin_dirs", "dns_servers", "spool_dir"):
        with open(os.path.join(srv.dir, name)) as src:
            (alt / name).write_text(src.read())
    (alt / "smtpgreeting").write_text("from QPSMTPD_CONFIG\n")
    env = {"QPSMTPD_CONFIG": str(alt)}
    with srv.session(env=env) as c:
        assert c.text == "from QPSMTPD_CONFIG ESMTP"
    # rcpthosts is not in $QPSMTPD_CONFIG: ./config/rcpthosts is used
    assert rcpt_codes(srv, ["u@cwd.test"], env=env) == [250]
    (alt / "rcpthosts").write_text("alt.test\n")
    assert rcpt_codes(srv, ["u@cwd.test", "u@alt.test"], env=env) == [550, 250]


def test_config_from_cwd_without_environment(config, tmp_path):
    srv = config(files={"smtpgreeting": "from ./config"})
    env = srv.env()
    del env["QPSMTPD_CONFIG"]
    env["QMAIL"] = str(tmp_path / "no-qmail")
    ours, theirs = socket.socketpair()
    proc = subprocess.Popen([QPSMTPD], stdin=theirs, stdout=theirs, stderr=subprocess.PIPE,
                            env=env, cwd=srv.tmp)
    theirs.close()
    with Client(ours, proc) as c:
        c.read_reply()
        assert c.text == "from ./config ESMTP"


def test_config_option(config, tmp_path):
    srv = config(files={"smtpgreeting": "via -c"})
    env = srv.env()
    del env["QPSMTPD_CONFIG"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    ours, theirs = socket.socketpair()
    proc = subprocess.Popen([QPSMTPD, "-c", srv.dir], stdin=theirs, stdout=theirs,
                            stderr=subprocess.PIPE, env=env, cwd=str(elsewhere))
    theirs.close()
    with Client(ours, proc) as c:
        c.read_reply()
        assert c.text == "via -c ESMTP"


def test_cdb_map_for_morercpthosts(config, tmp_path):
    srv = config(files={"rcpthosts": "example.test"})
    records = "".join(f"+{len(k)},{len(v)}:{k}->{v}\n" for k, v in
                      [("cdb-one.test", ""), ("cdb-two.test", "1"), ("Mixed.test", "")]) + "\n"
    subprocess.run(["cdb", "-c", os.path.join(srv.dir, "morercpthosts.cdb")], input=records.encode(),
                   check=True)
    assert rcpt_codes(srv, ["u@example.test", "u@cdb-one.test", "u@CDB-TWO.test", "u@cdb-three.test",
                            "u@sub.cdb-one.test"]) == [250, 250, 250, 550, 550]


def test_corrupt_cdb_is_not_fatal(config):
    srv = config(files={"rcpthosts": "example.test"})
    srv.write("morercpthosts.cdb", b"this is not a cdb file")
    assert rcpt_codes(srv, ["u@example.test", "u@other.test"]) == [250, 550]


# -- start-up errors --------------------------------------------------------------------------

def test_missing_plugin(config):
    srv = config()
    srv.write("plugins", "# comment\nrcpt_ok\nno_such_plugin arg\n")
    err = start_fails(srv)
    assert f"{srv.dir}/plugins:3" in err, err
    assert "no_such_plugin" in err and "not found" in err


@pytest.mark.parametrize("line, words", [
    ("t_badhook no_such_hook", ["Invalid hook", "no_such_hook"]),
    ("t_badmethod", ["Invalid hook", "rcpt_to"]),
    ("t_register_raise x y", ["refuses argument x y"]),
    ("t_twoclasses", ["exactly one Plugin"]),
    ("t_return rcpt NOT_A_CODE", ["unknown code NOT_A_CODE"]),
    ("queue/maildir", ["queue/maildir: missing argument DIR (the Maildir"]),
    ("rcpt_ok \x01bad", ["unsafe characters"]),
    ("rcpt_ok caf\u00e9\u200b", ["unsafe characters"]),
    ("../plugins/rcpt_ok", ["not found"]),
    ("/etc/passwd", ["not found"]),
])
def test_bad_plugin_lines(config, line, words):
    srv = config()
    srv.write("plugins", f"rcpt_ok\n\n{line}\n")
    err = start_fails(srv)
    assert f"{srv.dir}/plugins:3" in err, err
    for word in words:
        assert word in err, err


def test_plugin_with_syntax_error(config, tmp_path):
    broken = tmp_path / "broken_plugins"
    broken.mkdir()
    (broken / "t_broken.py").write_text("def oops(:\n    pass\n")
    srv = config(files={"plugin_dirs": [str(broken), *PLUGIN_DIRS]})
    srv.write("plugins", "t_broken\n")
    err = start_fails(srv)
    assert f"{srv.dir}/plugins:1" in err and "t_broken" in err, err


@pytest.mark.parametrize("name, value", [("databytes", "lots"), ("timeout", "soon"),
                                         ("loglevel", "loud"), ("bare_newlines", "sometimes")])
def test_bad_core_values(config, name, value):
    srv = config(files={name: f"# comment\n{value}"})
    err = start_fails(srv)
    assert name in err and value in err, err
    if name != "bare_newlines":
        assert f"{srv.dir}/{name}:2" in err, err


def test_no_plugins_configured(config):
    srv = config()
    srv.write("plugins", "# nothing here\n")
    err = start_fails(srv)
    assert "plugins" in err and "no plugins" in err, err


def test_second_instance_and_plugin_dirs_order(config, tmp_path):
    """name:N loads an independent instance; the first plugin dir holding a name wins."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "rcpt_ok.py").write_text(
        "from qpsmtpd_py.constants import DENY\nfrom qpsmtpd_py.plugin import Plugin\n"
        "class Shadow(Plugin):\n    def hook_rcpt(self, txn, rcpt, params):\n"
        "        return DENY, 'shadowed rcpt_ok'\n")
    srv = config(plugins=["t_return rcpt DECLINED", "t_return:2 rcpt DECLINED", "rcpt_ok"],
                 files={"plugin_dirs": [str(mine), *PLUGIN_DIRS]})
    with srv.session() as c:
        c.cmd("HELO client.test")
        c.cmd("MAIL FROM:<a@b.test>")
        assert c.cmd("RCPT TO:<u@mx.example.test>") == (550, "shadowed rcpt_ok")


def test_harness_config_dir_is_standalone(tmp_path):
    """A ConfigDir without plugin_dirs uses the checkout's plugins/ by default."""
    srv = ConfigDir(tmp_path, plugins=["rcpt_ok"])
    with srv.session() as c:
        c.cmd("HELO client.test")
        c.cmd("MAIL FROM:<a@b.test>")
        assert c.cmd("RCPT TO:<postmaster>")[0] == 250


@pytest.mark.no_services
def test_cdb_map_is_looked_for_at_most_once_a_recheck_period(tmp_path, monkeypatch):
    """A missing map (morerelayclients.cdb on most servers) costs no stat per
    connection; one that appears, or is rebuilt, is used after RECHECK_SECONDS."""
    from qpsmtpd_py import config as config_module
    from qpsmtpd_py.config import Config
    now = [1000.0]
    monkeypatch.setattr(config_module.time, "monotonic", lambda: now[0])
    looked = []
    real_isfile = os.path.isfile
    monkeypatch.setattr(config_module.os.path, "isfile", lambda p: looked.append(p) or real_isfile(p))
    config = Config([str(tmp_path)])
    assert config.get_map("morerelayclients") is None
    first = len(looked)
    assert first >= 1
    for _ in range(100):
        assert config.get_map("morerelayclients") is None
    assert len(looked) == first, "looked for again within the recheck period"
    path = tmp_path / "morerelayclients.cdb"
    subprocess.run(["cdb", "-c", str(path)], input=b"+9,0:127.0.0.5->\n\n", check=True)
    assert config.get_map("morerelayclients") is None          # not yet looked for again
    now[0] += config_module.RECHECK_SECONDS
    found = config.get_map("morerelayclients")
    assert found is not None and found.get(b"127.0.0.5") is not None
    subprocess.run(["cdb", "-c", str(path)], input=b"+9,0:127.0.0.6->\n\n", check=True)
    now[0] += config_module.RECHECK_SECONDS
    rebuilt = config.get_map("morerelayclients")
    assert rebuilt.get(b"127.0.0.6") is not None and rebuilt.get(b"127.0.0.5") is None
