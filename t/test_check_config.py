"""qpsmtpd-check-config (issue 14 item 3): loads a config directory without serving and
reports every line that needs attention with file:line, all of them, with an exit
status for scripts: 0 clean, 1 warnings, 78 errors."""

import os
import shutil
import subprocess
import sys

import pytest

from qpsmtpd_py.cli.check_config import check, main

pytestmark = pytest.mark.no_services

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEBIAN = "/etc/qpsmtpd"


def test_debians_stock_directory_needs_exactly_two_changes(tmp_path, capsys):
    if not os.path.isfile(os.path.join(DEBIAN, "plugins")):
        pytest.skip("Debian's qpsmtpd package is not installed")
    copy = tmp_path / "qpsmtpd"
    shutil.copytree(DEBIAN, copy)
    assert main([str(copy)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"warning: {copy}/plugin_dirs:2: plugin_dirs: /usr/share/qpsmtpd/plugins holds "
        "qpsmtpd's Perl plugins; qpsmtpd_py runs its own plugins of the same names instead "
        "(remove this line)",
        f"warning: {copy}/plugins: no queue plugin: every message would be refused with 451 "
        "(add queue/maildir, queue/smtp-forward, queue/lmtp ...)",
        f"{copy}: 0 error(s), 2 warning(s)",
    ], out


def test_the_sample_config_is_clean(tmp_path):
    shutil.copytree(os.path.join(ROOT, "etc"), tmp_path / "etc")
    result = subprocess.run([sys.executable, "-m", "qpsmtpd_py.cli.check_config", str(tmp_path / "etc")],
                            capture_output=True, text=True, cwd="/")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == f"{tmp_path}/etc: 0 error(s), 0 warning(s)\n"


def test_every_problem_is_reported_with_its_line(tmp_path, capsys):
    cfg = tmp_path / "config"
    cfg.mkdir()
    perl = tmp_path / "perlplugins"
    perl.mkdir()
    (perl / "my_perl_only").write_text("#!perl -w\nuse strict;\nsub register { my $self = shift; }\n")
    (cfg / "plugin_dirs").write_text(f"{perl}\n{ROOT}/plugins\n")
    (cfg / "loglevel").write_text("loud\n")
    (cfg / "databytes").write_text("lots\n")
    (cfg / "plugins").write_text("\n".join([
        "# comment",
        "check_earlytalker acton log",          # 2: unknown keyword
        "no_such_plugin",                        # 3: unknown plugin
        "relay",                                 # 4: fine
        "my_perl_only",                          # 5: Perl plugin, no Python one
        "check_loop max_hops many",              # 6: bad value
        "rcpt_ok",
        "queue/maildir {}/Maildir".format(tmp_path),
    ]) + "\n")
    assert main([str(cfg)]) == 78
    out = capsys.readouterr().out
    expected = [
        f"{cfg}/loglevel:1: loglevel 'loud'",
        f"{cfg}/databytes:1: databytes: 'lots' is not a whole number",
        f"{cfg}/plugins:2: ",
        f"{cfg}/plugins:3: cannot load plugin 'no_such_plugin'",
        f"{cfg}/plugins:5: cannot load plugin 'my_perl_only': {perl}/my_perl_only is a Perl plugin",
        f"{cfg}/plugins:6: ",
    ]
    lines = out.splitlines()
    for text in expected:
        assert any(l.startswith("error: " + text) for l in lines), (text, out)
    assert "acton" in out and "max_hops" in out
    assert not any(":4:" in l or ":7:" in l for l in lines), out
    assert lines[-1].endswith("6 error(s), 1 warning(s) -- the server would not start")
    assert lines[0].startswith(f"warning: {cfg}/plugin_dirs:1: plugin_dirs: {perl} holds")


def test_nothing_is_created_by_a_check(tmp_path):
    cfg = tmp_path / "config"
    cfg.mkdir()
    (cfg / "plugins").write_text("rcpt_ok\n")
    (cfg / "spool_dir").write_text("../spool\n")
    report = check(str(cfg))
    assert not (tmp_path / "spool").exists()
    assert [k for k, _ in report.items] == ["warning"]          # no queue plugin


def test_quiet_gives_only_the_status(tmp_path, capsys):
    assert main(["--quiet", str(tmp_path / "missing")]) == 78
    assert capsys.readouterr().out == ""


def test_a_broken_include_in_any_file_is_reported(tmp_path):
    cfg = tmp_path / "config"
    cfg.mkdir()
    (cfg / "plugins").write_text(f"rcpt_ok\nqueue/maildir {tmp_path}/Maildir\n")
    (cfg / "rcpthosts").write_text("example.test\n$include missing_domains\n")
    report = check(str(cfg))
    assert report.items == [("warning", f"{cfg}/rcpthosts:2: $include missing_domains: not found")], \
        report.items
