"""Start-up errors under systemd (issue 14 item 6): a line written before the config is
loaded (a broken config, a port in use, root without --user) carries journald's <N>
priority prefix like every later line when stderr is the journal (JOURNAL_STREAM names
it), so `journalctl -p err` shows why the server did not start. Real server processes;
the "journal" is a file whose device:inode JOURNAL_STREAM names, as systemd sets it."""

import os
import re
import socket
import subprocess

import pytest

from harness import bin_path

pytestmark = pytest.mark.no_services

PORT = 24025            # this file's own port (helper range 24000-24999)


def run(argv, tmp_path, journal=True, env=None):
    """(exit status, what the program wrote to stderr)."""
    path = tmp_path / "stderr"
    with open(path, "w+b") as err:
        st = os.fstat(err.fileno())
        full_env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
        full_env.update(env or {})
        if journal:
            full_env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                              env=full_env, timeout=60, cwd="/")
    return proc.returncode, path.read_text()


def broken_config(mail_config):
    cfg = mail_config("no_such_plugin_here")
    return cfg.dir


@pytest.mark.parametrize("program", ["qpsmtpd-prefork", "qpsmtpd-forkserver"])
def test_a_broken_config_is_an_error_line_for_the_journal(mail_config, tmp_path, program):
    config = broken_config(mail_config)
    code, text = run([bin_path(program), "--allow-root", "-l", "127.0.0.1", "-p", str(PORT),
                      "--config", config], tmp_path)
    assert code == 78, text
    lines = text.splitlines()
    assert lines and all(line.startswith("<3>") for line in lines), text
    assert re.search(rf"^<3>{program}: configuration error: .*plugins:1: .*no_such_plugin_here", text, re.M), text


def test_the_single_mode_too(mail_config, tmp_path):
    code, text = run([bin_path("qpsmtpd"), "--config", broken_config(mail_config)], tmp_path)
    assert code == 78
    assert re.fullmatch(r"<3>qpsmtpd: configuration error: .*no_such_plugin_here.*\n(<3>.*\n)*", text), text


def test_a_port_in_use_is_an_error_line_for_the_journal(mail_config, tmp_path):
    cfg = mail_config()
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", PORT))
        taken.listen(1)
        code, text = run([bin_path("qpsmtpd-prefork"), "--allow-root", "-l", f"127.0.0.1:{PORT}",
                          "--config", cfg.dir], tmp_path)
    assert code == 1, text
    assert re.fullmatch(rf"<3>qpsmtpd-prefork: .*127\.0\.0\.1:{PORT}.*in use.*\n", text, re.I | re.S), text


@pytest.mark.skipif(os.geteuid() != 0, reason="the check is for root")
def test_root_without_user_is_an_error_line_for_the_journal(mail_config, tmp_path):
    code, text = run([bin_path("qpsmtpd-prefork"), "-l", f"127.0.0.1:{PORT}", "--config",
                      mail_config().dir], tmp_path)
    assert code == 64
    assert text == "<3>qpsmtpd-prefork: --user is required when started as root (or --allow-root)\n"


def test_plain_lines_when_stderr_is_not_the_journal(mail_config, tmp_path):
    config = broken_config(mail_config)
    code, text = run([bin_path("qpsmtpd-prefork"), "--allow-root", "-l", "127.0.0.1", "-p", str(PORT),
                      "--config", config], tmp_path, journal=False, env={"JOURNAL_STREAM": "1:1"})
    assert code == 78
    assert text.startswith("qpsmtpd-prefork: configuration error: ") and "<3>" not in text, text


@pytest.mark.parametrize("program", ["qpsmtpd-prefork", "qpsmtpd-forkserver", "qpsmtpd"])
def test_a_bad_option_is_an_error_line_for_the_journal(tmp_path, program):
    """A typo in ExecStart: the usage and the error carry <3>, so `journalctl -p err`
    says why the unit did not start (argparse alone writes them unprefixed)."""
    code, text = run([bin_path(program), "--no-such-option"], tmp_path)
    assert code == 2, text
    lines = text.splitlines()
    assert lines and all(line.startswith("<3>") for line in lines), text
    assert f"<3>{program}: error: unrecognized arguments: --no-such-option" in lines, text
    code, text = run([bin_path(program), "--no-such-option"], tmp_path, journal=False)
    assert code == 2 and "<3>" not in text and "error: unrecognized arguments" in text, text
