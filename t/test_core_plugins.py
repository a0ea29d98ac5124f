"""The small core plugins of issue 2, each through real sessions with a real
`qpsmtpd` process: replies, delivered mail, archive and log files, syslog records."""

import os
import re
import socket
import tempfile
import time

import pytest
from tools import require_tool

MAILDIR = "queue/maildir {maildir}"
LOCAL = {"rcpthosts": "example.test"}


def deliver(c, sender="a@b.test", rcpts=("u@example.test",), body="Subject: hi\n\nhello"):
    """One message; EHLO first unless this session already greeted."""
    code, text = c.send_message(sender, list(rcpts), body, ehlo=not getattr(c, "greeted", False))
    c.greeted = True
    assert code == 250, text
    return text


def stderr_of(srv, commands, env=None):
    """Run a session (EHLO + commands + QUIT) and return what the server logged."""
    with srv.session(env=env) as c:
        c.ehlo()
        for line in commands:
            c.cmd(line)
        c.cmd("QUIT")
    return c.stderr


# -- check_norelay -------------------------------------------------------------------
def test_check_norelay_takes_relaying_away_from_listed_clients(make_config):
    srv = make_config(["relay", "check_norelay", "rcpt_ok", MAILDIR],
                      files={**LOCAL, "loglevel": "6", "relayclients": "192.0.2.",
                             "norelayclients": ["192.0.2.10", "198.51.100."]})
    for ip in ("192.0.2.10", "198.51.100.7"):
        with srv.session(env={"TCPREMOTEIP": ip, "RELAYCLIENT": ""}) as c:
            c.ehlo()
            assert c.cmd("MAIL FROM:<a@b.test>")[0] == 250
            assert c.cmd("RCPT TO:<x@elsewhere.example>") == (550, "5.7.1 Relaying denied (#5.7.1)")
            assert c.cmd("RCPT TO:<u@example.test>")[0] == 250
        assert f"check_norelay: {ip} denied relaying" in c.stderr
    with srv.session(env={"TCPREMOTEIP": "192.0.2.11"}) as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@b.test>")
        assert c.cmd("RCPT TO:<x@elsewhere.example>")[0] == 250


# -- dont_require_anglebrackets ------------------------------------------------------
def test_bare_addresses_are_refused_without_the_plugin(make_config):
    with make_config(files=LOCAL).session() as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:ask@perl.org")[0] == 501


def test_dont_require_anglebrackets_adds_the_brackets(make_config):
    srv = make_config(["dont_require_anglebrackets", "rcpt_ok", MAILDIR], files=LOCAL)
    with srv.session() as c:
        c.ehlo()
        code, text = c.cmd("MAIL FROM:ask@perl.org")
        assert code == 250 and text.startswith("2.1.0 <ask@perl.org>, sender OK")
        assert c.cmd("RCPT TO:u@example.test") == (250, "2.1.5 <u@example.test>, recipient ok")
        c.cmd("RSET")
        assert c.cmd("MAIL FROM:ask@[1.2.3.4] SIZE=100")[0] == 250
        assert c.cmd("RCPT TO:<u@example.test>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send("Subject: bare\r\n\r\nbody\r\n.\r\n")
        assert c.read_reply()[0] == 250
    assert srv.messages()[0].startswith(b"Return-Path: <ask@[1.2.3.4]>\n")


# -- parse_addr_withhelo -------------------------------------------------------------
def test_helo_clients_may_not_send_esmtp_parameters(make_config):
    # loaded after a mail_pre plugin that answers OK: its check must still run first
    srv = make_config(["dont_require_anglebrackets", "parse_addr_withhelo", "rcpt_ok", MAILDIR],
                      files=LOCAL)
    with srv.session() as c:
        assert c.cmd("HELO client.example.test")[0] == 250
        assert c.cmd("MAIL FROM:<a@b.test> SIZE=10") == (501, "No parameters allowed in MAIL")
        assert c.cmd("MAIL FROM:a@b.test BODY=8BITMIME") == (501, "No parameters allowed in MAIL")
        assert c.cmd("MAIL FROM:<a@b.test>")[0] == 250
        assert c.cmd("RCPT TO:<u@example.test> NOTIFY=NEVER") == (501, "No parameters allowed in RCPT")
        assert c.cmd("RCPT TO:<u@example.test>")[0] == 250
    with srv.session() as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@b.test> SIZE=10")[0] == 250
        assert c.cmd("RCPT TO:<u@example.test>")[0] == 250


# -- count_unrecognized_commands -----------------------------------------------------
def test_fourth_unrecognized_command_disconnects(make_config):
    srv = make_config(["count_unrecognized_commands 4", "rcpt_ok"])
    with srv.session() as c:
        for verb in ("FOO", "GET / HTTP/1.0", "BAR"):
            assert c.cmd(verb) == (500, "Unrecognized command")
        assert c.cmd("NOOP")[0] == 250          # known commands do not reset the count
        assert c.cmd("BAZ") == (521, "Closing connection, 4 unrecognized commands. "
                                     "Perhaps you should read RFC 2821?")
        assert c.closed()


def test_unrecognized_command_limit_is_an_argument(make_config):
    with make_config(["count_unrecognized_commands 2", "rcpt_ok"]).session() as c:
        assert c.cmd("FOO")[0] == 500
        code, text = c.cmd("FOO")
        assert code == 521 and text.startswith("Closing connection, 2 unrecognized")
        assert c.closed()


# -- noop_counter --------------------------------------------------------------------
def test_third_consecutive_noop_disconnects(make_config):
    with make_config(["noop_counter", "rcpt_ok"]).session() as c:
        assert c.cmd("NOOP") == (250, "OK")
        assert c.cmd("NOOP") == (250, "OK")
        assert c.cmd("NOOP") == (500, "Stop wasting my time, too many consecutive NOOPs")
        assert c.closed()


def test_other_commands_reset_the_noop_count(make_config):
    # rcpt_ok answers RCPT before noop_counter in load order: the reset still happens
    srv = make_config(["rcpt_ok", "noop_counter 3", MAILDIR], files=LOCAL)
    with srv.session() as c:
        for command in ("NOOP", "NOOP", "EHLO c.test", "NOOP", "NOOP", "MAIL FROM:<a@b.test>",
                        "NOOP", "NOOP", "RCPT TO:<u@example.test>", "NOOP", "NOOP", "RSET",
                        "NOOP", "NOOP", "HELP", "NOOP", "NOOP", "VRFY <u@example.test>",
                        "NOOP", "NOOP"):
            assert c.cmd(command)[0] in (214, 250, 252), command
        code, text = c.cmd("NOOP")
        assert code == 500 and "too many consecutive NOOPs" in text


# -- help ----------------------------------------------------------------------------
def test_help_not_implemented(make_config):
    with make_config(["help not_implemented 1", "rcpt_ok"]).session() as c:
        assert c.cmd("HELP") == (502, "Not implemented.")
        assert c.cmd("HELP MAIL") == (502, "Not implemented.")


def test_help_files(make_config, tmp_path):
    help_dir = tmp_path / "help"
    help_dir.mkdir()
    (help_dir / "mail").write_text("MAIL FROM:<address>\nstarts a mail transaction\n")
    (help_dir / "rcpt-help.txt").write_text("RCPT TO:<address>\n")
    srv = make_config([f"help help_dir {help_dir} rcpt rcpt-help.txt", "rcpt_ok"])
    with srv.session() as c:
        assert c.cmd("HELP") == (214, "Try 'HELP COMMAND' for getting help on COMMAND")
        assert c.cmd("HELP mail") == (214, "MAIL FROM:<address>\nstarts a mail transaction")
        assert c.raw == [b"214-MAIL FROM:<address>\r\n", b"214 starts a mail transaction\r\n"]
        assert c.cmd("HELP RCPT") == (214, "RCPT TO:<address>")
        assert c.cmd("HELP data") == (214, "No help available for SMTP command: data")
        assert c.cmd("HELP ../../etc/passwd") == (502, "Invalid command name")


def test_help_without_the_plugin_is_the_builtin_text(make_config):
    with make_config(["rcpt_ok"]).session() as c:
        code, text = c.cmd("HELP")
        assert code == 214 and "This is qpsmtpd" in text


# -- quit_fortune --------------------------------------------------------------------
def test_quit_fortune_for_helo_clients_only(make_config):
    require_tool("fortune")
    srv = make_config(["quit_fortune", "rcpt_ok"])
    with srv.session() as c:
        c.cmd("HELO client.example.test")
        c.send("QUIT\r\n")
        code, lines = c.read_reply()
        assert code == 221 and lines[0] == "mx.example.test closing connection."
        assert len(lines) >= 2 and all(line.startswith("  / ") for line in lines[1:])
        assert c.closed()
    with srv.session() as c:
        c.ehlo()
        assert c.cmd("QUIT") == (221, "2.0.0 mx.example.test closing connection. Have a wonderful day.")


# -- random_error --------------------------------------------------------------------
def test_random_error_100_percent_fails_at_connect(make_config):
    srv = make_config(["random_error 100", "rcpt_ok", MAILDIR], files=LOCAL)
    for _ in range(3):
        with srv.session() as c:
            assert (c.code, c.text) == (450, "random failure")
            assert c.closed()


def test_random_error_0_percent_never_fails(make_config):
    srv = make_config(["random_error 0", "rcpt_ok", MAILDIR], files=LOCAL)
    with srv.session() as c:
        assert c.code == 220
        for _ in range(3):
            deliver(c)
    assert len(srv.messages()) == 3


def test_random_error_rejects_bad_arguments(make_config):
    srv = make_config(["random_error lots", "rcpt_ok"])
    with srv.session(read_greeting=False) as c:
        assert c.closed()
    assert "random_error: percent 'lots': expected a number" in c.stderr, c.stderr


# -- content_log ---------------------------------------------------------------------
def test_content_log_appends_every_message_to_the_daily_file(make_config, tmp_path):
    srv = make_config(["rcpt_ok", "content_log", MAILDIR], files=LOCAL)
    with srv.session() as c:
        deliver(c, body="Subject: first\n\none")
        deliver(c, body="Subject: second\n\ntwo")
    archive = tmp_path / "mail" / time.strftime("%Y%m%d")
    data = archive.read_bytes()
    assert data.startswith(b"Received: from ")
    assert re.search(rb"Subject: first\n\none\nReceived: from .*Subject: second\n\ntwo\n$", data, re.S)
    assert (archive.stat().st_mode & 0o777) == 0o600
    assert len(srv.messages()) == 2          # the archive does not stop delivery


def test_content_log_file_and_switch(make_config, tmp_path):
    srv = make_config(["rcpt_ok", "content_log", MAILDIR],
                      files={**LOCAL, "content_log_file": str(tmp_path / "archive/%Y/qp.log"),
                             "content_log_enabled": "no"})
    with srv.session() as c:
        deliver(c)
    assert not (tmp_path / "archive").exists()
    srv.write("content_log_enabled", "yes")
    with srv.session() as c:
        deliver(c, body="Subject: kept\n\nkept")
    assert b"Subject: kept" in (tmp_path / "archive" / time.strftime("%Y") / "qp.log").read_bytes()


# -- connection_time -----------------------------------------------------------------
def test_connection_time_is_logged_at_info(make_config):
    srv = make_config(["connection_time", "rcpt_ok"], files={"loglevel": "6"})
    log = stderr_of(srv, ["NOOP"])
    assert re.search(r"connection_time: \d+\.\d{3} s\. \(192\.0\.2\.10\)", log), log
    srv.write("loglevel", "5")
    assert "connection_time" not in stderr_of(srv, [])


# -- rcpt_accept ---------------------------------------------------------------------
def test_rcpt_accept_takes_any_recipient(make_config):
    srv = make_config(["rcpt_accept", MAILDIR])
    with srv.session() as c:
        deliver(c, rcpts=["anyone@anywhere.example", "postmaster"])
    assert b"Delivered-To: anyone@anywhere.example\n" in srv.messages()[0]


# -- logging/* -----------------------------------------------------------------------
def test_logging_file_writes_filtered_lines_with_timestamps(make_config, tmp_path):
    path = tmp_path / "qpsmtpd.log"
    srv = make_config(files={**LOCAL, "loglevel": "7",
                             "logging": f"logging/file loglevel LOGINFO tsformat %Y-%m-%dT%H:%M:%S {path}"})
    log = stderr_of(srv, ["MAIL FROM:<a@b.test>", "RCPT TO:<u@example.test>"])
    assert "recipient" not in log                # a logging plugin replaces stderr
    text = path.read_text()
    host = socket.gethostname()
    assert re.search(rf"^\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d {re.escape(host)}\[\d+\]: "
                     r".*recipient <u@example.test> accepted$", text, re.M), text
    assert "rcpt_ok: pass, example.test is local" in text
    assert "dispatching" not in text             # LOGDEBUG is above the file's level


def test_logging_file_per_session_files_and_pipe(make_config, tmp_path):
    logdir = tmp_path / "logs"
    logdir.mkdir()
    piped = tmp_path / "piped.log"
    srv = make_config(files={**LOCAL, "logging": [
        f"logging/file loglevel LOGINFO {logdir}/%Y%m%d-%i.log",
        f"logging/file:2 loglevel LOGINFO |cat >> {piped}"]})
    for _ in range(2):
        stderr_of(srv, ["MAIL FROM:<a@b.test>"])
    files = sorted(os.listdir(logdir))
    assert len(files) == 2, files
    assert all(re.fullmatch(time.strftime("%Y%m%d") + r"-\d{8,}-\d{4,}-\d+\.log", f) for f in files)
    deadline = time.time() + 5
    while time.time() < deadline and (not piped.exists() or piped.read_text().count("sender <a@b.test> accepted") < 2):
        time.sleep(0.05)
    assert piped.read_text().count("sender <a@b.test> accepted") == 2


@pytest.mark.no_services
def test_logging_file_reopens_a_rotated_file(session_server, clock, tmp_path):
    """logrotate renames the file: lines go on into the renamed one for at most a
    second (the name is looked at once a second, not for every line), then into a new
    file under the configured name."""
    path = tmp_path / "rot.log"
    server = session_server(files={**LOCAL, "logging": f"logging/file loglevel LOGINFO {path}"})
    server.talk("EHLO c.test", "MAIL FROM:<first@b.test>", "RSET",
                lambda: os.rename(path, tmp_path / "rot.log.1"),    # what logrotate does
                "MAIL FROM:<second@b.test>", "RSET",
                lambda: clock.advance(1.5),
                "MAIL FROM:<third@b.test>", "QUIT")
    rotated = (tmp_path / "rot.log.1").read_text()
    assert "first@b.test" in rotated and "second@b.test" in rotated
    assert "third@b.test" in path.read_text()
    assert "second@b.test" not in path.read_text()


@pytest.fixture
def syslog_socket():
    """A unix datagram socket standing where /dev/log would be."""
    directory = tempfile.mkdtemp(prefix="qpsl", dir="/tmp")
    path = os.path.join(directory, "log")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)

    def records():
        out = []
        while True:
            try:
                out.append(sock.recv(65536).decode())
            except BlockingIOError:
                return out
    yield path, records
    sock.close()
    os.unlink(path)
    os.rmdir(directory)


def test_logging_syslog_sends_records(make_config, syslog_socket):
    path, records = syslog_socket
    srv = make_config(files={**LOCAL, "logging":
                             f"logging/syslog loglevel LOGINFO ident qptest facility LOG_LOCAL3 logsock unix:{path}"})
    stderr_of(srv, ["MAIL FROM:<a@b.test>"])
    got = records()
    # LOG_LOCAL3 (19 * 8) + LOG_INFO (6) = 158
    assert any(re.fullmatch(r"<158>\w{3} [ \d]\d \d\d:\d\d:\d\d qptest\[\d+\]: .*sender <a@b.test> accepted", r)
               for r in got), got
    assert not any(r.startswith("<159>") for r in got)        # no LOG_DEBUG lines
    srv.write("loglevel", "7")          # the core only makes debug lines at loglevel 7
    srv.write("logging", f"logging/syslog loglevel 7 priority LOG_ERR logsock stream:/nonexistent,unix:{path}")
    stderr_of(srv, ["MAIL FROM:<a@b.test>"])
    got = records()
    assert got and all(r.startswith("<19>") and " qpsmtpd[" in r for r in got), got   # LOG_MAIL + LOG_ERR
    assert any("dispatching" in r for r in got)


def test_logging_adaptive_replays_accepted_transactions_only(make_config):
    srv = make_config(files={**LOCAL, "logging": "logging/adaptive accept LOGINFO reject LOGNOTICE prefix ~"})
    with srv.session() as c:
        deliver(c)
        c.cmd("MAIL FROM:<a@b.test>")
        assert c.cmd("RCPT TO:<x@remote.example>")[0] == 550
        c.cmd("RSET")
        c.cmd("QUIT")
    log = c.stderr
    assert re.search(r"^\d+ ~ .*rcpt_ok: pass, example.test is local$", log, re.M), log
    assert re.search(r"^\d+ ~ .*queued by queue/maildir", log, re.M), log
    assert "not one of our domains" not in log      # info line of a denied transaction


def test_logging_devnull_swallows_everything(make_config):
    srv = make_config(files={**LOCAL, "loglevel": "7"})
    assert "dispatching" in stderr_of(srv, ["NOOP"])
    srv.write("logging", "logging/devnull")
    assert stderr_of(srv, ["NOOP", "FOO"]) == ""
