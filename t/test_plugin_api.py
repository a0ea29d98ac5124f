"""The plugin contract as a running server shows it: plugins that raise or return
nonsense, second instances, config and deny hooks (docs/plugin-api.md)."""

import re

import pytest

INTERNAL = "Internal error - try again later"


def assert_logged_traceback(stderr, hook):
    assert f"FATAL PLUGIN ERROR [t_raise] in hook {hook}" in stderr, stderr
    assert "Traceback (most recent call last)" in stderr
    assert f"RuntimeError: t_raise boom in {hook}" in stderr


def test_raise_in_rcpt_is_a_temporary_failure(mail_config):
    srv = mail_config(plugins=["t_raise rcpt", "rcpt_ok", "queue/maildir {maildir}"])
    c = srv.session()
    with c:
        c.cmd("HELO client.test")
        c.cmd("MAIL FROM:<a@b.test>")
        code, text = c.cmd("RCPT TO:<u@example.test>")
        assert 400 <= code < 500, (code, text)
        assert code == 450 and text == INTERNAL
        # the session survives
        assert c.cmd("NOOP") == (250, "OK")
        assert c.cmd("RSET") == (250, "OK")
        assert c.cmd("MAIL FROM:<c@d.test>")[0] == 250
        assert c.cmd("RCPT TO:<u@example.test>")[0] == 450
        assert c.cmd("QUIT")[0] == 221
    assert_logged_traceback(c.stderr, "rcpt")
    assert c.proc.returncode == 0


def test_raise_in_mail_and_data(mail_config):
    srv = mail_config(plugins=["t_raise mail data", "rcpt_ok", "queue/maildir {maildir}"])
    c = srv.session()
    with c:
        c.ehlo()
        code, text = c.cmd("MAIL FROM:<a@b.test>")
        assert code == 450 and text.endswith(INTERNAL) and text.startswith("4."), text
        assert c.cmd("RCPT TO:<u@example.test>")[0] == 503       # not accepted
        code, text = c.cmd("DATA")
        assert code == 451 and text.startswith("4.") and text.endswith(INTERNAL)
    assert_logged_traceback(c.stderr, "mail")
    assert_logged_traceback(c.stderr, "data")


def test_raise_in_queue_delivers_nothing(mail_config):
    srv = mail_config(plugins=["rcpt_ok", "t_raise queue", "queue/maildir {maildir}"])
    c = srv.session()
    with c:
        code, text = c.send_message("a@b.test", ["u@example.test"], "Subject: x\n\nbody")
        assert 400 <= code < 500 and INTERNAL in text, (code, text)
        assert c.cmd("NOOP")[0] == 250
    assert srv.messages() == []
    assert_logged_traceback(c.stderr, "queue")


def test_raise_in_connect_refuses_temporarily(mail_config):
    srv = mail_config(plugins=["t_raise connect", "rcpt_ok"])
    c = srv.session()
    with c:
        assert 400 <= c.code < 500 and c.text == INTERNAL, (c.code, c.text)
        assert c.closed()
    assert_logged_traceback(c.stderr, "connect")


def test_raise_in_helo(mail_config):
    srv = mail_config(plugins=["t_raise helo", "rcpt_ok"])
    with srv.session() as c:
        assert c.cmd("HELO client.test") == (450, INTERNAL)
        assert c.cmd("MAIL FROM:<a@b.test>")[0] == 503


@pytest.mark.parametrize("hook", ["disconnect", "reset_transaction", "data_post_headers", "queue_post",
                                  "post-connection", "deny"])
def test_raise_in_hooks_without_a_reply_is_logged_only(mail_config, hook):
    srv = mail_config(plugins=[f"t_raise {hook}", "rcpt_ok", "queue/maildir {maildir}"])
    c = srv.session()
    with c:
        assert c.cmd("HELO client.test")[0] == 250
        assert c.cmd("MAIL FROM:<a@b.test>")[0] == 250
        assert c.cmd("RCPT TO:<u@elsewhere.test>")[0] == 550     # runs the deny hook
        code, text = c.send_message("a@b.test", ["u@example.test"], "Subject: x\n\nbody", ehlo=False)
        assert code == 250, text
        assert c.cmd("QUIT")[0] == 221
        assert c.closed()
    assert len(srv.messages()) == 1
    assert f"t_raise boom in {hook}" in c.stderr
    assert c.proc.returncode == 0


def test_returning_none_is_logged_and_skipped(mail_config):
    srv = mail_config(plugins=["t_return rcpt NONE", "t_return:2 mail NONE", "rcpt_ok", "queue/maildir {maildir}"])
    c = srv.session()
    with c:
        code, text = c.send_message("a@b.test", ["u@example.test"], "Subject: x\n\nbody")
        assert code == 250, text
    assert "Plugin t_return, hook rcpt returned undef!" in c.stderr, c.stderr
    assert re.search(r"Plugin t_return:2, hook mail returned undef!", c.stderr), c.stderr
    assert len(srv.messages()) == 1


def test_first_answer_wins_and_declined_passes_on(mail_config):
    srv = mail_config(plugins=["t_return rcpt DECLINED", "t_return:2 rcpt DENY second says no",
                  "t_return:3 rcpt OK", "queue/maildir {maildir}"])
    with srv.session() as c:
        c.cmd("HELO client.test")
        c.cmd("MAIL FROM:<a@b.test>")
        assert c.cmd("RCPT TO:<u@example.test>") == (550, "second says no")


def test_config_hook_overrides_files(mail_config):
    srv = mail_config(plugins=["t_config smtpgreeting Hooked_greeting_here", "rcpt_ok"],
                 files={"smtpgreeting": "from the file"})
    with srv.session() as c:
        assert (c.code, c.text) == (220, "Hooked greeting here ESMTP")


def test_deny_and_ok_hooks_run_after_each_plugin(mail_config, tmp_path):
    marks = tmp_path / "marks"
    srv = mail_config(plugins=[f"t_marker {marks} deny ok", "rcpt_ok"])
    with srv.session() as c:
        c.cmd("HELO client.test")
        c.cmd("MAIL FROM:<a@b.test>")
        marks.write_text("")
        assert c.cmd("RCPT TO:<u@elsewhere.test>")[0] == 550
        assert marks.read_text() == "deny\n"
        marks.write_text("")
        assert c.cmd("RCPT TO:<u@example.test>")[0] == 250
        assert marks.read_text() == "ok\n"


def test_log_lines_name_pid_hook_and_plugin(mail_config):
    srv = mail_config(plugins=["rcpt_ok"], files={"loglevel": "6"})
    c = srv.session()
    with c:
        c.cmd("HELO client.test")
        c.cmd("MAIL FROM:<a@b.test>")
        c.cmd("RCPT TO:<u@elsewhere.test>")
    assert re.search(rf"^{c.proc.pid} .*rcpt_ok: .*fail, elsewhere\.test is not one of our domains$",
                     c.stderr, re.M), c.stderr


def test_loglevel_hides_info_by_default(mail_config):
    srv = mail_config(plugins=["rcpt_ok"])
    c = srv.session()
    with c:
        c.cmd("HELO client.test")
        c.cmd("MAIL FROM:<a@b.test>")
        c.cmd("RCPT TO:<u@elsewhere.test>")
    assert "not one of our domains" not in c.stderr


def test_received_line_hook_replaces_the_received_value(mail_config):
    srv = mail_config(plugins=[r"t_return received_line OK from custom.test\n by mx with ESMTP; now", "rcpt_ok",
                  "queue/maildir {maildir}"])
    with srv.session() as c:
        assert c.send_message("a@b.test", ["u@example.test"], "Subject: r\n\nbody")[0] == 250
    (msg,) = srv.messages()
    assert b"\nReceived: from custom.test\n by mx with ESMTP; now\nAuthentication-Results: " in msg
    assert msg.count(b"Received:") == 1
