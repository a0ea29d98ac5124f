"""qpsmtpd's *_parse hooks (helo_parse, ehlo_parse, mail_parse, rcpt_parse, auth_parse):
a plugin returns (OK, parser) and the parser reads the command's arguments
(t/plugins/t_parse.py), run in-process; and the start-up warning for
`reject naughty` without a naughty plugin."""

import base64


def b64(text):
    return base64.b64encode(text.encode()).decode()


def test_mail_and_rcpt_parsers_replace_the_core_parser(session_server):
    server = session_server("t_parse mail rcpt")
    d = server.talk("HELO client.test", "MAIL FROM:<a@b.test> SIZE=10",
                    "MAIL FROM:<a@b.test>", "RCPT TO:<u@example.test> NOTIFY=NEVER",
                    "RCPT TO:<u@example.test>", "MAIL TO:<x@y>", "QUIT")
    assert d.pairs[2:7] == [
        (501, "No parameters allowed in MAIL"),
        (250, "<a@b.test>, sender OK - how exciting to get mail from you!"),
        (501, "No parameters allowed in RCPT"),
        (250, "<u@example.test>, recipient ok"),
        (501, "Syntax error in command"),
    ]


def test_parser_may_return_parameters_as_a_dict(session_server):
    """{'SIZE': '2000'} from the parser reaches the core's SIZE check."""
    server = session_server("t_parse mail params", files={"databytes": "1000"})
    d = server.talk("EHLO client.test", "MAIL FROM:<a@b.test> size=2000", "QUIT")
    assert d.pairs[2] == (552, "5.3.4 Message size exceeds fixed maximum message size")


def test_without_a_parser_the_core_parses(session_server):
    server = session_server("t_parse helo")              # MAIL has no parser here
    d = server.talk("HELO client.test", "MAIL FROM:<a@b.test> BODY=8BITMIME", "QUIT")
    assert d.codes[2] == 250


def test_helo_and_ehlo_parsers(session_server):
    server = session_server("t_parse helo ehlo")
    d = server.talk("HELO bad", "EHLO good.test,extra", "QUIT")
    assert d.pairs[1] == (501, "Bad host")
    assert d.codes[2] == 250
    assert d.connection.hello_host == "good.test"


def test_auth_parser(session_server):
    server = session_server("t_parse auth", "auth/auth_flat_file",
                            files={"flat_auth_pw": "amy@example.test:amypw",
                                   "auth_allow_plaintext": "1"})
    d = server.talk("EHLO client.test", "AUTH PLAIN=" + b64("\0amy@example.test\0amypw"), "QUIT")
    assert d.codes[2] == 235, d.pairs


def test_a_crashing_parser_is_a_temporary_failure(session_server):
    server = session_server("t_parse mail crash")
    d = server.talk("HELO client.test", "MAIL FROM:<a@b.test>", "QUIT")
    assert d.pairs[2] == (451, "Internal error - try again later")
    assert "FATAL PLUGIN ERROR [t_parse] in hook mail_parse" in d.log
    assert "t_parse parser boom" in d.log


def test_a_parse_hook_that_returns_something_else_is_logged_and_ignored(session_server):
    server = session_server("t_parse mail junk")
    d = server.talk("HELO client.test", "MAIL FROM:<a@b.test> SIZE=10", "QUIT")
    assert d.codes[2] == 250                              # the core parsed it
    assert "hook mail_parse must return DECLINED or (OK, parser)" in d.log


def test_reject_naughty_without_the_naughty_plugin_warns_at_start(mail_config):
    srv = mail_config("check_badmailfrom reject naughty")
    with srv.session() as c:
        c.cmd("QUIT")
    assert "reject naughty, but no naughty plugin is loaded" in c.stderr
    assert "config/plugins:1 (check_badmailfrom)" in c.stderr
    srv = mail_config("check_badmailfrom reject 0")
    with srv.session() as c:
        c.cmd("QUIT")
    assert "naughty" not in c.stderr
