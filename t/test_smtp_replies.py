"""The core's SMTP replies, row by row of qpsmtpd's reply table (reference §1.3),
spoken to a real `qpsmtpd` process. Hook results come from the test plugin
t/plugins/t_return.py so no policy plugin is involved."""

import re

import pytest

ME = "mx.example.test"
IP = "192.0.2.10"
HAPPY = f"{ME} Hi [{IP}] [{IP}]; I am so happy to meet you."


def raw_reply(c, line):
    """Send a command, return the reply exactly as bytes."""
    c.send(line + "\r\n")
    c.read_reply()
    return b"".join(c.raw)


def ended(c):
    """The server closed the connection."""
    return c.closed(timeout=5)


# -- greeting ----------------------------------------------------------------------

def test_default_greeting(mail_config):
    srv = mail_config()
    with srv.session() as c:
        assert c.code == 220
        assert re.fullmatch(rf"{ME} ESMTP qpsmtpd\S* \d+\.\d+\S* ready; "
                            r"send us your mail, but not your spam\.", c.text), c.text
        assert c.raw[0].endswith(b"\r\n")


@pytest.mark.parametrize("greeting, shown", [
    ("Welcome to the test host", "Welcome to the test host ESMTP"),
    ("mail.test ESMTP at your service", "mail.test ESMTP at your service"),
    ("ESMTP ready", "ESMTP ready"),
])
def test_smtpgreeting(mail_config, greeting, shown):
    srv = mail_config(files={"smtpgreeting": greeting})
    with srv.session() as c:
        assert (c.code, c.text) == (220, shown)
        # HELP leaves out the version when the greeting is customised
        c.send("HELP\r\n")
        c.read_reply()
        assert c.code == 214 and not re.search(r"\d+\.\d+", c.lines[0]), c.lines


def test_connect_hook_results(mail_config):
    srv = mail_config(plugins=["t_return connect DENY"])
    with srv.session() as c:
        assert (c.code, c.text) == (550, "Connection from you denied, bye bye.")
        assert ended(c)
    srv = mail_config(plugins=["t_return connect DENYSOFT come back later"])
    with srv.session() as c:
        assert (c.code, c.text) == (450, "come back later")
        assert ended(c)
    srv = mail_config(plugins=["t_return connect DENYSOFT_DISCONNECT"])
    with srv.session() as c:
        assert (c.code, c.text) == (450, "Connection from you temporarily denied, bye bye.")
        assert ended(c)
    # DONE: the plugin greeted, the core sends no 220 of its own
    srv = mail_config(plugins=["t_return connect DONE", "rcpt_ok"])
    with srv.session() as c:
        assert (c.code, c.text) == (250, "t_return done")
        assert c.cmd("NOOP") == (250, "OK")


# -- HELO / EHLO ------------------------------------------------------------------------

def test_helo_replies_are_byte_identical_to_qpsmtpd(mail_config):
    srv = mail_config()
    with srv.session() as c:
        assert raw_reply(c, "HELO") == b"501 helo requires domain/address - see RFC-2821 4.1.1.1\r\n"
        assert raw_reply(c, "EHLO") == b"501 ehlo requires domain/address - see RFC-2821 4.1.1.1\r\n"
        assert raw_reply(c, "MAIL FROM:<a@b.test>") == b"503 please say hello first ...\r\n"
        assert raw_reply(c, "HELO client.test") == f"250 {HAPPY}\r\n".encode()
        assert raw_reply(c, "HELO again.test") == b"503 but you already said HELO ...\r\n"
        assert raw_reply(c, "EHLO again.test") == b"503 but you already said HELO ...\r\n"
        assert raw_reply(c, "MAIL FROM:<a@b.test>") == \
            b"250 <a@b.test>, sender OK - how exciting to get mail from you!\r\n"
        assert raw_reply(c, "RCPT TO:<u@example.test>") == b"250 <u@example.test>, recipient ok\r\n"
        assert raw_reply(c, "RCPT TO:<u@elsewhere.test>") == b"550 Relaying denied (#5.7.1)\r\n"
        assert raw_reply(c, "NOOP") == b"250 OK\r\n"
        assert raw_reply(c, "VRFY someone") == \
            b"252 Just try sending a mail and we'll see how it turns out ...\r\n"
        assert raw_reply(c, "FOO bar") == b"500 Unrecognized command\r\n"
        assert raw_reply(c, "DATA") == b"354 go ahead\r\n"
        c.send("Subject: t\r\n\r\nbody\r\n.\r\n")
        c.read_reply()
        assert c.code == 250 and c.text.startswith("Queued!"), c.text
        assert raw_reply(c, "RSET") == b"250 OK\r\n"
        assert raw_reply(c, "QUIT") == f"221 {ME} closing connection. Have a wonderful day.\r\n".encode()
        assert ended(c)


def test_ehlo_keywords_and_enhanced_codes(mail_config):
    srv = mail_config()
    with srv.session() as c:
        code, text = c.cmd("EHLO client.test")
        lines = text.split("\n")
        assert code == 250
        assert lines[0] == f"{ME} Hi [{IP}] [{IP}]"
        assert lines[1:] == ["PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8"]
        # the EHLO reply itself carries no enhanced code, the others do
        assert raw_reply(c, "MAIL FROM:<a@b.test>") == \
            b"250 2.1.0 <a@b.test>, sender OK - how exciting to get mail from you!\r\n"
        assert c.cmd("RCPT TO:<u@example.test>") == (250, "2.1.5 <u@example.test>, recipient ok")
        assert c.cmd("RCPT TO:<u@elsewhere.test>") == (550, "5.7.1 Relaying denied (#5.7.1)")
        code, text = c.cmd("FOO")
        assert code == 500 and re.fullmatch(r"5\.5\.\d Unrecognized command", text), text
        code, text = c.cmd("NOOP")
        assert code == 250 and re.fullmatch(r"2\.\d\.\d OK", text), text
        code, text = c.cmd("VRFY x")
        assert code == 252 and text.endswith(" Just try sending a mail and we'll see how it turns out ...")
        assert re.match(r"2\.\d\.\d ", text)
        code, text = c.cmd("QUIT")
        assert code == 221 and text.endswith(f"{ME} closing connection. Have a wonderful day.")
        assert ended(c)


def test_ehlo_advertises_size_when_databytes_set(mail_config):
    srv = mail_config(files={"databytes": "5000000"})
    with srv.session() as c:
        assert c.ehlo() == ["PIPELINING", "8BITMIME", "SIZE 5000000", "ENHANCEDSTATUSCODES", "SMTPUTF8"]


def test_helo_shows_remote_host_when_known(mail_config):
    srv = mail_config()
    with srv.session(env={"TCPREMOTEHOST": "client.example.test"}) as c:
        assert c.cmd("HELO x.test") == (
            250, f"{ME} Hi client.example.test [{IP}]; I am so happy to meet you.")


@pytest.mark.parametrize("code, reply, disconnect", [
    ("DENY", 550, False), ("DENYSOFT", 450, False),
    ("DENY_DISCONNECT", 550, True), ("DENYSOFT_DISCONNECT", 450, True),
])
def test_helo_hook_denials(mail_config, code, reply, disconnect):
    srv = mail_config(plugins=[f"t_return helo {code} no thanks", f"t_return:2 ehlo {code} no thanks", "rcpt_ok"])
    with srv.session() as c:
        assert c.cmd("HELO bad.test") == (reply, "no thanks")
        if disconnect:
            assert ended(c)
            return
        # refused HELO does not count as a greeting
        assert c.cmd("MAIL FROM:<a@b.test>") == (503, "please say hello first ...")
        assert c.cmd("EHLO bad.test") == (reply, "no thanks")


# -- MAIL ---------------------------------------------------------------------------------

def test_mail_syntax_errors(mail_config):
    srv = mail_config()
    with srv.session() as c:
        c.cmd("HELO client.test")
        assert c.cmd("MAIL") == (501, "Syntax error in command")
        assert c.cmd("MAIL TO:<a@b.test>") == (501, "Syntax error in command")
        assert c.cmd("MAIL FROM:<a@b.test> @bad param") == (501, "Syntax error in parameters")
        assert c.cmd("MAIL FROM:a@b.test") == (501, "could not parse your mail from command")
        # qpsmtpd 0.94's text (t/test_differential_perl.py): the path is not <...>
        assert c.cmd("MAIL FROM:<a@b.test") == (501, "could not parse your mail from command")
        assert c.cmd("MAIL FROM:<root>") == (501, "could not parse your mail from command")
        assert c.cmd("MAIL FROM:<a@@b.test>") == (501, "could not parse your mail from command")
        # the session is still usable
        assert c.cmd("mail from:<a@b.test>") == (250, "<a@b.test>, sender OK - how exciting to get mail from you!")


@pytest.mark.parametrize("line", ["MAIL FROM:<>", "MAIL FROM:", "MAIL FROM: <>", "MAIL FROM:<> SIZE=10"])
def test_null_sender(mail_config, line):
    srv = mail_config()
    with srv.session() as c:
        c.cmd("HELO client.test")
        assert c.cmd(line) == (250, "<>, sender OK - how exciting to get mail from you!")
        assert c.cmd("RCPT TO:<postmaster>") == (250, "<postmaster>, recipient ok")
        code, text = c.cmd("DATA")
        assert code == 354
        c.send("Subject: bounce\r\n\r\nx\r\n.\r\n")
        assert c.read_reply()[0] == 250
    (msg,) = srv.messages()
    assert msg.startswith(b"Return-Path: <>\n")


@pytest.mark.parametrize("code, message, reply, text, disconnect", [
    ("DENY", "", 550, "<a@b.test>, denied", False),
    ("DENY", "go away", 550, "go away", False),
    ("DENYSOFT", "", 450, "<a@b.test>, temporarily denied", False),
    ("DENYSOFT", "later please", 450, "later please", False),
    ("DENY_DISCONNECT", "", 550, "<a@b.test>, denied", True),
    ("DENY_DISCONNECT", "bye now", 550, "bye now", True),
    ("DENYSOFT_DISCONNECT", "", 421, "<a@b.test>, temporarily denied", True),
    ("DENYSOFT_DISCONNECT", "try later", 421, "try later", True),
    ("OK", "", 250, "<a@b.test>, sender OK - how exciting to get mail from you!", False),
    ("DECLINED", "", 250, "<a@b.test>, sender OK - how exciting to get mail from you!", False),
])
def test_mail_hook_results(mail_config, tmp_path, code, message, reply, text, disconnect):
    marks = tmp_path / "marks"
    srv = mail_config(plugins=[f"t_return mail {code} {message}".strip(), "rcpt_ok",
                          f"t_marker {marks} disconnect"])
    with srv.session() as c:
        c.cmd("HELO client.test")
        assert c.cmd("MAIL FROM:<a@b.test>") == (reply, text)
        if disconnect:
            assert ended(c)
        else:
            # the sender counts only when accepted
            expected = 250 if reply == 250 else 503
            assert c.cmd("RCPT TO:<u@example.test>")[0] == expected
            c.cmd("QUIT")
            assert ended(c)
    assert marks.read_text() == "disconnect\n"


def test_mail_multiline_denial(mail_config):
    srv = mail_config(plugins=[r"t_return mail DENY first line\nsecond line", "rcpt_ok"])
    with srv.session() as c:
        c.cmd("HELO client.test")
        assert raw_reply(c, "MAIL FROM:<a@b.test>") == b"550-first line\r\n550 second line\r\n"


def test_failed_mail_discards_earlier_sender(mail_config):
    srv = mail_config()
    with srv.session() as c:
        c.cmd("HELO client.test")
        assert c.cmd("MAIL FROM:<a@b.test>")[0] == 250
        assert c.cmd("MAIL FROM:broken")[0] == 501
        assert c.cmd("RCPT TO:<u@example.test>") == (503, "Use MAIL before RCPT")
        assert c.cmd("DATA") == (503, "MAIL first")


def test_second_mail_starts_new_transaction(mail_config):
    srv = mail_config()
    with srv.session() as c:
        c.cmd("HELO client.test")
        c.cmd("MAIL FROM:<a@b.test>")
        c.cmd("RCPT TO:<one@example.test>")
        c.cmd("MAIL FROM:<c@d.test>")
        c.cmd("RCPT TO:<two@example.test>")
        c.cmd("DATA")
        c.send("Subject: x\r\n\r\nbody\r\n.\r\n")
        assert c.read_reply()[0] == 250
    (msg,) = srv.messages()
    assert msg.startswith(b"Return-Path: <c@d.test>\nDelivered-To: two@example.test\nReceived:")


# -- RCPT ------------------------------------------------------------------------------------

def test_rcpt_replies(mail_config):
    srv = mail_config()
    with srv.session() as c:
        c.cmd("HELO client.test")
        assert c.cmd("RCPT TO:<u@example.test>") == (503, "Use MAIL before RCPT")
        c.cmd("MAIL FROM:<a@b.test>")
        for bad in ("RCPT TO:<>", "RCPT TO:<root>", "RCPT TO:u@example.test", "RCPT TO:<u@>",
                    "RCPT TO:<abuse>"):
            assert c.cmd(bad) == (501, "could not parse recipient"), bad
        assert c.cmd("RCPT FROM:<u@example.test>") == (501, "Syntax error in command")
        assert c.cmd("RCPT TO:<postmaster>") == (250, "<postmaster>, recipient ok")
        # a bare postmaster is canonified to lower case, as qpsmtpd does
        assert c.cmd("RCPT TO:<PostMaster>") == (250, "<postmaster>, recipient ok")
        assert c.cmd("rcpt to: <u@example.test>") == (250, "<u@example.test>, recipient ok")
        assert c.cmd("RCPT TO:<u@other.test>") == (550, "Relaying denied (#5.7.1)")


def test_rcpt_without_deciding_plugin(mail_config):
    srv = mail_config(plugins=["queue/maildir {maildir}"])
    with srv.session() as c:
        c.cmd("HELO client.test")
        c.cmd("MAIL FROM:<a@b.test>")
        assert c.cmd("RCPT TO:<u@example.test>") == (450, "No plugin decided if relaying is allowed")
    srv = mail_config(plugins=["t_return rcpt DECLINED", "queue/maildir {maildir}"])
    with srv.session() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@b.test>")
        code, text = c.cmd("RCPT TO:<u@example.test>")
        assert code == 450 and re.fullmatch(r"4\.\d\.\d No plugin decided if relaying is allowed", text)


@pytest.mark.parametrize("code, message, reply, text, disconnect", [
    ("OK", "", 250, "<u@other.test>, recipient ok", False),
    ("DENY", "", 550, "relaying denied", False),
    ("DENY", "no such user", 550, "no such user", False),
    ("DENYSOFT", "", 450, "relaying denied", False),
    ("DENYSOFT", "mailbox busy", 450, "mailbox busy", False),
    ("DENY_DISCONNECT", "", 550, "delivery denied", True),
    ("DENYSOFT_DISCONNECT", "", 421, "relaying denied", True),
])
def test_rcpt_hook_results(mail_config, code, message, reply, text, disconnect):
    srv = mail_config(plugins=[f"t_return rcpt {code} {message}".strip(), "rcpt_ok"])
    with srv.session() as c:
        c.cmd("HELO client.test")
        c.cmd("MAIL FROM:<a@b.test>")
        assert c.cmd("RCPT TO:<u@other.test>") == (reply, text)
        if disconnect:
            assert ended(c)
        else:
            assert c.cmd("NOOP") == (250, "OK")


# -- DATA and queue ---------------------------------------------------------------------------

def test_data_order_errors(mail_config):
    srv = mail_config()
    with srv.session() as c:
        c.cmd("HELO client.test")
        assert c.cmd("DATA") == (503, "MAIL first")
        c.cmd("MAIL FROM:<a@b.test>")
        assert c.cmd("DATA") == (503, "RCPT first")
        c.cmd("RCPT TO:<u@other.test>")          # refused: still no recipient
        assert c.cmd("DATA") == (503, "RCPT first")
        c.cmd("RCPT TO:<u@example.test>")
        assert c.cmd("DATA") == (354, "go ahead")
        c.send("\r\n.\r\n")
        assert c.read_reply()[0] == 250


@pytest.mark.parametrize("code, message, reply, text", [
    ("DENY", "", 554, "Message denied"),
    ("DENY", "not from you", 554, "not from you"),
    ("DENYSOFT", "", 451, "Message denied temporarily"),
    ("DENYSOFT", "later", 451, "later"),
])
def test_data_hook_denials_reset_the_transaction(mail_config, code, message, reply, text):
    srv = mail_config(plugins=[f"t_return data {code} {message}".strip(), "rcpt_ok",
                          "queue/maildir {maildir}"])
    with srv.session() as c:
        c.cmd("HELO client.test")
        # the data hooks run before the MAIL/RCPT checks (as in qpsmtpd)
        assert c.cmd("DATA") == (reply, text)
        c.cmd("MAIL FROM:<a@b.test>")
        c.cmd("RCPT TO:<u@example.test>")
        assert c.cmd("DATA") == (reply, text)
        # the transaction was reset: the recipient is gone
        assert c.cmd("RCPT TO:<u@example.test>") == (503, "Use MAIL before RCPT")
        assert c.cmd("NOOP") == (250, "OK")
    assert srv.messages() == []


@pytest.mark.parametrize("code, reply", [("DENY_DISCONNECT", 554), ("DENYSOFT_DISCONNECT", 421)])
def test_data_hook_disconnects(mail_config, code, reply):
    srv = mail_config(plugins=[f"t_return data {code} bye", "rcpt_ok", "queue/maildir {maildir}"])
    with srv.session() as c:
        c.cmd("HELO client.test")
        c.cmd("MAIL FROM:<a@b.test>")
        c.cmd("RCPT TO:<u@example.test>")
        assert c.cmd("DATA") == (reply, "bye")
        assert ended(c)


def _one_message(c, ehlo=False):
    if ehlo:
        c.ehlo()
    else:
        c.cmd("HELO client.test")
    c.cmd("MAIL FROM:<a@b.test>")
    c.cmd("RCPT TO:<u@example.test>")
    assert c.cmd("DATA")[0] == 354
    c.send("Subject: q\r\n\r\nbody\r\n.\r\n")
    return c.read_reply()


@pytest.mark.parametrize("plugin, reply, text", [
    ("t_return queue OK", 250, "Queued"),
    ("t_return queue OK accepted as 123", 250, "accepted as 123"),
    ("t_return queue DENY", 552, "Message denied"),
    ("t_return queue DENY no way", 552, "no way"),
    ("t_return queue DENYSOFT", 452, "Message denied temporarily"),
    ("t_return queue DENYSOFT disk full", 452, "disk full"),
    ("t_return queue DECLINED", 451, "Queuing declined or disabled; try again later"),
    (None, 451, "Queuing declined or disabled; try again later"),
])
def test_queue_outcomes(mail_config, plugin, reply, text):
    srv = mail_config(plugins=["rcpt_ok"] + ([plugin] if plugin else []))
    with srv.session() as c:
        assert _one_message(c) == (reply, [text])
        # every outcome ends the transaction
        assert c.cmd("RCPT TO:<u@example.test>") == (503, "Use MAIL before RCPT")
        assert c.cmd("QUIT")[0] == 221


def test_queue_replies_after_ehlo_carry_enhanced_codes(mail_config):
    srv = mail_config(plugins=["rcpt_ok", "t_return queue DENYSOFT disk full"])
    with srv.session() as c:
        code, lines = _one_message(c, ehlo=True)
        assert code == 452 and re.fullmatch(r"4\.\d\.\d disk full", lines[0]), lines
    srv = mail_config()
    with srv.session() as c:
        code, lines = _one_message(c, ehlo=True)
        assert code == 250 and lines[0].startswith("2.0.0 Queued!"), lines


def test_queue_done_and_data_post(mail_config):
    srv = mail_config(plugins=["rcpt_ok", "t_return data_post DENY spam", "queue/maildir {maildir}"])
    with srv.session() as c:
        assert _one_message(c) == (552, ["spam"])
        assert c.cmd("RCPT TO:<u@example.test>") == (503, "Use MAIL before RCPT")
    srv = mail_config(plugins=["rcpt_ok", "t_return data_post DENYSOFT", "queue/maildir {maildir}"])
    with srv.session() as c:
        assert _one_message(c) == (452, ["Message denied temporarily"])
    assert srv.messages() == []


# -- the other verbs ---------------------------------------------------------------------------

def test_rset_clears_the_sender(mail_config):
    srv = mail_config()
    with srv.session() as c:
        c.cmd("HELO client.test")
        c.cmd("MAIL FROM:<a@b.test>")
        c.cmd("RCPT TO:<u@example.test>")
        assert c.cmd("RSET") == (250, "OK")
        assert c.cmd("RCPT TO:<u@example.test>") == (503, "Use MAIL before RCPT")
        assert c.cmd("DATA") == (503, "MAIL first")
        # RSET before HELO is fine too, and HELO is still remembered after RSET
        assert c.cmd("MAIL FROM:<a@b.test>")[0] == 250


def test_noop_vrfy_help_quit(mail_config):
    srv = mail_config()
    with srv.session() as c:
        assert c.cmd("NOOP") == (250, "OK")
        assert c.cmd("NOOP with arguments") == (250, "OK")
        assert c.cmd("VRFY postmaster") == (252, "Just try sending a mail and we'll see how it turns out ...")
        c.send("HELP\r\n")
        code, lines = c.read_reply()
        assert code == 214 and len(lines) == 3
        assert [r[:4] for r in c.raw] == [b"214-", b"214-", b"214 "]
        assert re.fullmatch(r"This is qpsmtpd\S* \d+\.\d+\S*", lines[0]), lines
        assert lines[1:] == ["See http://smtpd.develooper.com/",
                             "To report bugs or send comments, mail to <ask@develooper.com>."]
        assert c.cmd("quit") == (221, f"{ME} closing connection. Have a wonderful day.")
        assert ended(c)


@pytest.mark.parametrize("line", ["FOO", "EXPN list", "BDAT 10 LAST", "STARTTLS", "AUTH PLAIN AAAA",
                                  "", "MAIL_FROM:<a@b.test>", "x" * 13])
def test_unrecognized_commands(mail_config, line):
    srv = mail_config()
    with srv.session() as c:
        assert c.cmd(line) == (500, "Unrecognized command")
        assert c.cmd("NOOP") == (250, "OK")


@pytest.mark.parametrize("plugin, line, reply, text, disconnect", [
    ("t_return noop DENY", "NOOP", 500, "Stop wasting my time.", False),
    ("t_return noop DENY_DISCONNECT", "NOOP", 500, "Stop wasting my time.", True),
    ("t_return vrfy OK", "VRFY x", 250, "User OK", False),
    ("t_return vrfy DENY", "VRFY x", 554, "Access Denied", False),
    ("t_return help DENY", "HELP", 500, "Syntax error, command not recognized", False),
    ("t_return unrecognized_command DENY", "FOO", 500, "Unrecognized command", False),
    ("t_return unrecognized_command DENY nope", "FOO", 500, "nope", False),
    ("t_return unrecognized_command DENY_DISCONNECT enough", "FOO", 521, "enough", True),
    ("t_return unrecognized_command DONE", "FOO", 250, "t_return done", False),
])
def test_other_hook_results(mail_config, plugin, line, reply, text, disconnect):
    srv = mail_config(plugins=[plugin, "rcpt_ok"])
    with srv.session() as c:
        assert c.cmd(line) == (reply, text)
        if disconnect:
            assert ended(c)
        else:
            assert c.cmd("RSET") == (250, "OK")


def test_quit_hook_done_suppresses_221(mail_config):
    srv = mail_config(plugins=["t_return quit DONE", "rcpt_ok"])
    with srv.session() as c:
        assert c.cmd("QUIT") == (250, "t_return done")
        assert ended(c)
        assert c.buf == b""
