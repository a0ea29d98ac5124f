"""mailinglist_simple: list headers, signatures, PROTECTED lists and delivery to the
members through queue/maildir."""

import pytest


LISTS = """# list        access     members        signature
staff@example.test  PROTECTED  staff.members  staff.sig  owner=owner@example.test
News@Example.test   PUBLIC     alice@example.test,bob@other.test,news@example.test
broken@example.test PUBLIC
odd@example.test    SECRET     staff.members
gone@example.test   PUBLIC     missing.members
"""


@pytest.fixture
def srv(mail_config):
    srv = mail_config("mailinglist_simple",
                      files={"loglevel": "6", "mailinglist_simple": LISTS,
                             "staff.members": "alice@example.test\nCarol@Example.test  # the boss\n",
                             "staff.sig": "-- \nstaff list: mail staff-request@example.test\n"})
    return srv


def post(srv, sender, rcpts, body):
    with srv.session() as c:
        c.ehlo()
        assert c.cmd(f"MAIL FROM:<{sender}>")[0] == 250
        replies = [c.cmd(f"RCPT TO:<{r}>") for r in rcpts]
        if replies[0][0] != 250:
            return replies, None
        assert c.cmd("DATA")[0] == 354
        c.send(body.replace("\n", "\r\n") + "\r\n.\r\n")
        c.read_reply()
        return replies, (c.code, c.text)


def split(msg):
    head, _, body = msg.partition(b"\n\n")
    return head.decode(), body.decode()


def test_public_list_delivers_to_every_member_with_list_headers(srv):
    replies, final = post(srv, "stranger@else.test", ["news@example.test"],
                          "Reply-To: me@else.test\nSubject: hello\n\nhi all")
    assert replies == [(250, "2.1.5 <news@example.test>, recipient ok")] and final[0] == 250
    (msg,) = srv.messages()
    head, body = split(msg)
    assert head.startswith("Return-Path: <stranger@else.test>\n"
                           "Delivered-To: alice@example.test\nDelivered-To: bob@other.test\n")
    assert "Reply-To: <news@example.test>\n" in head and "me@else.test" not in head
    assert "Precedence: bulk\n" in head and "X-Mailing-List: <news@example.test>" in head
    assert body == "hi all\n"                        # no signature configured


def test_protected_list_takes_members_only_and_adds_the_signature(srv):
    replies, _ = post(srv, "stranger@else.test", ["staff@example.test"], "x")
    assert replies == [(550, "5.7.1 Sorry, only members may post to staff@example.test (#5.7.1)")]
    replies, final = post(srv, "carol@example.TEST", ["Staff@Example.test"], "Subject: s\n\nmeeting")
    assert final[0] == 250
    (msg,) = srv.messages()
    head, body = split(msg)
    assert head.startswith("Return-Path: <owner@example.test>\n"
                           "Delivered-To: alice@example.test\nDelivered-To: carol@example.test\n")
    assert body == "meeting\n-- \nstaff list: mail staff-request@example.test\n"


def test_signature_goes_into_a_multipart_message_as_a_part(srv):
    body = ('Subject: m\nMIME-Version: 1.0\nContent-Type: multipart/mixed;\n boundary="XX"\n\n'
            "--XX\nContent-Type: text/plain\n\nhello\n--XX--")
    assert post(srv, "alice@example.test", ["staff@example.test"], body)[1][0] == 250
    _, got = split(srv.messages()[0])
    assert got == ("--XX\nContent-Type: text/plain\n\nhello\n"
                   "--XX\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 7bit\n\n"
                   "-- \nstaff list: mail staff-request@example.test\n--XX--\n")


def test_no_signature_in_an_encoded_body(srv):
    body = "Subject: b\nContent-Transfer-Encoding: base64\n\naGVsbG8="
    replies, final = post(srv, "alice@example.test", ["staff@example.test"], body)
    assert final[0] == 250
    assert split(srv.messages()[0])[1] == "aGVsbG8=\n"


def test_one_list_per_transaction(srv):
    replies, _ = post(srv, "alice@example.test",
                      ["staff@example.test", "news@example.test", "u@example.test", "staff@example.test"],
                      "Subject: x\n\ny")
    assert [r[0] for r in replies] == [250, 450, 450, 250]
    assert replies[1][1] == "4.5.3 Please send to news@example.test in a separate message (#4.5.3)"
    replies, _ = post(srv, "alice@example.test", ["u@example.test", "staff@example.test"], "x")
    assert [r[0] for r in replies] == [250, 450]


def test_mail_loops_are_refused(srv):
    replies, final = post(srv, "alice@example.test", ["news@example.test"],
                          "X-Mailing-List: <news@example.test>\nSubject: x\n\nagain")
    assert final == (552, "5.4.6 Mail loop: this message has been through news@example.test (#5.4.6)")
    assert srv.messages() == []


def test_bad_lines_are_logged_and_a_missing_members_file_is_temporary(srv):
    with srv.session() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<alice@example.test>")
        assert c.cmd("RCPT TO:<gone@example.test>")[0] == 450
        assert c.cmd("RCPT TO:<odd@example.test>")[0] == 250        # not a list: rcpt_ok
    log = c.stderr
    assert "mailinglist_simple:4: need LIST PUBLIC|PROTECTED MEMBERS; line ignored" in log
    assert "mailinglist_simple:5: 'SECRET' must be PUBLIC or PROTECTED; line ignored" in log
    assert "missing.members: No such file or directory" in log
