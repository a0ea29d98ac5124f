"""The reply table, every row: for each hook and each return code a plugin can give,
the SMTP reply the client gets and whether the session ends (reference §1.3).
In-process sessions (t/inproc.py), so all ~120 rows run in about a second; the
byte-exact replies over a real socket are in test_smtp_replies.py."""

import pytest

from inproc import message_wire

pytestmark = pytest.mark.no_services

ME = "mx.example.test"
BODY = message_wire("Subject: t\n\nhello")
MAIL = ["HELO client.test", "MAIL FROM:<a@b.test>", "RCPT TO:<u@example.test>"]

# hook -> the client's script up to the command whose reply the hook decides
REACH = {
    "connect": [],
    "helo": ["HELO client.test"],
    "ehlo": ["EHLO client.test"],
    "mail_pre": MAIL[:2],
    "mail": MAIL[:2],
    "rcpt_pre": MAIL,
    "rcpt": MAIL,
    "data": MAIL + ["DATA"],
    "data_headers_end": MAIL + ["DATA", BODY],
    "data_post": MAIL + ["DATA", BODY],
    "queue_pre": MAIL + ["DATA", BODY],
    "queue": MAIL + ["DATA", BODY],
    "vrfy": ["VRFY someone"],
    "noop": ["NOOP"],
    "help": ["HELP"],
    "unrecognized_command": ["FOO"],
    "quit": ["QUIT"],
}

GREETING = (220, f"{ME} ESMTP qpsmtpd_py")          # a prefix: the version follows
HAPPY = f"{ME} Hi [192.0.2.10] [192.0.2.10]; I am so happy to meet you."
SENDER_OK = "<a@b.test>, sender OK - how exciting to get mail from you!"
QUEUED = (250, "Queued")                             # the t_capture queue
# the answer when the hook accepts (OK) or has no opinion (DECLINED)
ACCEPTED = {
    "connect": GREETING, "helo": (250, HAPPY), "ehlo": (250, f"{ME} Hi [192.0.2.10] [192.0.2.10]"),
    "mail_pre": (250, SENDER_OK), "mail": (250, SENDER_OK),
    "rcpt_pre": (250, "<u@example.test>, recipient ok"), "rcpt": (250, "<u@example.test>, recipient ok"),
    "data": (354, "go ahead"), "data_headers_end": QUEUED, "data_post": QUEUED,
    "queue_pre": QUEUED, "queue": QUEUED,
    "vrfy": (252, "Just try sending a mail and we'll see how it turns out ..."),
    "noop": (250, "OK"), "help": (214, "This is qpsmtpd_py"),
    "unrecognized_command": (500, "Unrecognized command"),
    "quit": (221, f"{ME} closing connection. Have a wonderful day."),
}
ACCEPTED_BY_OK = {"vrfy": (250, "User OK")}           # where OK differs from DECLINED
QUIT_ENDS = {"quit"}                                  # hooks whose command ends the session anyway

# (hook, code) -> (SMTP code, default text, session ends)
REFUSED = {}


def rows(hook, deny, soft, deny_disc=None, soft_disc=None, ends=True, plain_ends=False):
    """The four refusals of one hook; *_DISCONNECT are the plain reply + disconnect
    unless given."""
    REFUSED[(hook, "DENY")] = (*deny, plain_ends)
    REFUSED[(hook, "DENYSOFT")] = (*soft, plain_ends)
    REFUSED[(hook, "DENY_DISCONNECT")] = (*(deny_disc or deny), ends)
    REFUSED[(hook, "DENYSOFT_DISCONNECT")] = (*(soft_disc or soft), ends)


rows("connect", (550, "Connection from you denied, bye bye."),
     (450, "Connection from you temporarily denied, bye bye."), plain_ends=True)
rows("helo", (550, "HELO client.test refused"), (450, "HELO client.test refused"))
rows("ehlo", (550, "EHLO client.test refused"), (450, "EHLO client.test refused"))
rows("mail_pre", (550, "Address refused"), (450, "Address refused"))
rows("mail", (550, "<a@b.test>, denied"), (450, "<a@b.test>, temporarily denied"),
     soft_disc=(421, "<a@b.test>, temporarily denied"))
rows("rcpt_pre", (550, "Address refused"), (450, "Address refused"))
rows("rcpt", (550, "relaying denied"), (450, "relaying denied"),
     deny_disc=(550, "delivery denied"), soft_disc=(421, "relaying denied"))
rows("data", (554, "Message denied"), (451, "Message denied temporarily"),
     soft_disc=(421, "Message denied temporarily"))
rows("data_post", (552, "Message denied"), (452, "Message denied temporarily"))
rows("queue_pre", (552, "Message denied"), (452, "Message denied"), ends=False)
rows("queue", (552, "Message denied"), (452, "Message denied temporarily"))
rows("vrfy", (554, "Access Denied"), (554, "Access Denied"))
rows("help", (500, "Syntax error, command not recognized"),
     (500, "Syntax error, command not recognized"))
rows("unrecognized_command", (500, "Unrecognized command"), (451, "Unrecognized command"),
     deny_disc=(521, "Unrecognized command"), soft_disc=(421, "Unrecognized command"))
# data_headers_end refuses only with its disconnect codes; DENY/DENYSOFT are ignored
REFUSED[("data_headers_end", "DENY_DISCONNECT")] = (554, "Message denied", True)
REFUSED[("data_headers_end", "DENYSOFT_DISCONNECT")] = (421, "Message denied temporarily", True)
# NOOP knows only DENY and DENY_DISCONNECT (as qpsmtpd's noop_respond)
REFUSED[("noop", "DENY")] = (500, "Stop wasting my time.", False)
REFUSED[("noop", "DENY_DISCONNECT")] = (500, "Stop wasting my time.", True)

CODES = ["OK", "DECLINED", "DENY", "DENYSOFT", "DENY_DISCONNECT", "DENYSOFT_DISCONNECT", "DONE"]
CASES = [(hook, code) for hook in REACH for code in CODES]


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """One loaded in-process server per (hook, code): plugins load once per row."""
    from fakeclock import FakeClock
    from harness import PLUGIN_DIRS, ConfigDir
    from inproc import InProcessServer
    made = {}

    def get(hook, code, message=""):
        key = (hook, code, message)
        if key not in made:
            cfg = ConfigDir(tmp_path_factory.mktemp("reply"),
                            plugins=[f"t_return {hook} {code} {message}".strip(),
                                     "rcpt_ok", "t_capture"],
                            files={"plugin_dirs": PLUGIN_DIRS, "rcpthosts": "example.test"})
            made[key] = InProcessServer(cfg, clock=FakeClock())
        return made[key]
    return get


def answer_to(d, hook):
    """The reply that answered the hook's command."""
    return d.replies[len(REACH[hook])]


@pytest.mark.parametrize("hook, code", CASES, ids=[f"{h}-{c}" for h, c in CASES])
def test_reply_for_each_hook_result(servers, hook, code):
    """After the hook's command the client sends RSET and QUIT: answered when the
    session goes on, never read when it ended."""
    accepted = code in ("OK", "DECLINED") and (hook, code) not in REFUSED
    message = [BODY] if hook == "data" and accepted else []      # 354: send the message
    d = servers(hook, code).talk(*REACH[hook], *message, "RSET", "QUIT")
    reply = answer_to(d, hook)
    if code == "DONE":
        # the plugin answered itself; the session goes on (QUIT still ends it)
        assert (reply.code, reply.text) == (250, "t_return done")
        expected_end = hook == "quit"
    elif (hook, code) in REFUSED:
        smtp, text, expected_end = REFUSED[(hook, code)]
        assert (reply.code, reply.text) == (smtp, text)
    else:
        smtp, text = (code == "OK" and ACCEPTED_BY_OK.get(hook)) or ACCEPTED[hook]
        assert reply.code == smtp and reply.text.startswith(text), (reply.code, reply.text)
        expected_end = hook in QUIT_ENDS
    if expected_end:
        assert reply is d.replies[-1], d.pairs
        assert d.unread.startswith(b"RSET\r\n") or hook == "quit"
    else:
        assert d.codes[-2:] == [250, 221], d.pairs
        assert d.unread == b""
    assert d.channel.closed


@pytest.mark.parametrize("hook", [h for h in REACH if (h, "DENY") in REFUSED])
def test_the_plugin_text_replaces_the_default(servers, hook):
    d = servers(hook, "DENY", r"first line\nsecond line").talk(*REACH[hook], "QUIT")
    reply = answer_to(d, hook)
    assert reply.code == REFUSED[(hook, "DENY")][0]
    assert reply.lines == ["first line", "second line"]
    assert reply.raw.startswith(b"%d-first line\r\n" % reply.code)


@pytest.mark.parametrize("hook", ["mail", "rcpt", "data", "data_post", "queue"])
def test_refused_transactions_deliver_nothing(servers, hook):
    d = servers(hook, "DENY").talk(*MAIL, "DATA", BODY, "QUIT")
    assert d.messages == []
    d = servers(hook, "DECLINED").talk(*MAIL, "DATA", BODY, "QUIT")
    (msg,) = d.messages
    assert msg["body"] == b"hello\n" and msg["recipients"] == ["<u@example.test>"]


def test_rcpt_with_no_deciding_plugin(session_server):
    srv = session_server(final=["t_capture"])
    d = srv.talk(*MAIL, "QUIT")
    assert d.pairs[3] == (450, "No plugin decided if relaying is allowed")


def test_queue_with_no_queue_plugin(session_server):
    srv = session_server(final=["rcpt_ok"])
    d = srv.talk(*MAIL, "DATA", BODY, "QUIT")
    assert d.pairs[5] == (451, "Queuing declined or disabled; try again later")


def test_enhanced_codes_after_ehlo(servers):
    d = servers("rcpt", "DENYSOFT_DISCONNECT").talk("EHLO client.test", *MAIL[1:])
    assert d.pairs[2:] == [(250, f"2.1.0 {SENDER_OK}"), (421, "4.7.1 relaying denied")]
