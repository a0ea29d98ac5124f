"""PIPELINING (RFC 2920): a client may send many commands in one write; every
reply comes back, in order, and messages in the same session stay separate."""

import re


def read_all_replies(c, count):
    out = []
    for _ in range(count):
        code, lines = c.read_reply()
        out.append((code, "\n".join(lines)))
    return out


def test_whole_session_in_one_write(make_config):
    srv = make_config(files={"rcpthosts": "example.test"})
    c = srv.session(read_greeting=False)
    with c:
        c.send(b"EHLO client.test\r\n"
               b"MAIL FROM:<a@b.test>\r\n"
               b"RCPT TO:<one@example.test>\r\n"
               b"RCPT TO:<nobody@elsewhere.test>\r\n"
               b"RCPT TO:<two@example.test>\r\n"
               b"DATA\r\n"
               b"Subject: pipelined\r\n\r\nfirst body\r\n.\r\n"
               b"MAIL FROM:<c@d.test>\r\n"
               b"RCPT TO:<three@example.test>\r\n"
               b"DATA\r\n"
               b"Subject: second\r\n\r\nsecond body\r\nQUIT\r\n.\r\n"
               b"NOOP\r\n"
               b"QUIT\r\n")
        replies = read_all_replies(c, 13)
        codes = [code for code, _ in replies]
        assert codes == [220, 250, 250, 250, 550, 250, 354, 250, 250, 250, 354, 250, 250], replies
        assert replies[1][1].split("\n")[1] == "PIPELINING"
        assert replies[4][1] == "5.7.1 Relaying denied (#5.7.1)"
        assert replies[7][1].startswith("2.0.0 Queued!")
        assert c.read_reply()[0] == 221
        assert c.closed()
    first, second = srv.messages()
    assert b"Delivered-To: one@example.test\nDelivered-To: two@example.test\n" in first
    assert first.endswith(b"\n\nfirst body\n") and b"second" not in first
    assert second.startswith(b"Return-Path: <c@d.test>\nDelivered-To: three@example.test\n")
    # a command word inside the body is just text
    assert second.endswith(b"\n\nsecond body\nQUIT\n")


def test_pipelined_errors_do_not_desynchronise(make_config):
    srv = make_config(files={"rcpthosts": "example.test"})
    with srv.session() as c:
        c.send(b"HELO client.test\r\n"
               b"RCPT TO:<u@example.test>\r\n"       # 503: no MAIL yet
               b"MAIL FROM:bad\r\n"                  # 501
               b"DATA\r\n"                           # 503 MAIL first
               b"MAIL FROM:<a@b.test>\r\n"
               b"RCPT TO:<u@example.test>\r\n"
               b"DATA\r\n"
               b"Subject: ok\r\n\r\nthe one\r\n.\r\n"
               b"RSET\r\n")
        replies = read_all_replies(c, 9)
        assert [code for code, _ in replies] == [250, 503, 501, 503, 250, 250, 354, 250, 250], replies
        assert re.match(r"Queued!", replies[7][1])
    (msg,) = srv.messages()
    assert msg.endswith(b"\nthe one\n")


def test_message_after_message_in_one_session(make_config):
    srv = make_config(files={"rcpthosts": "example.test"})
    with srv.session() as c:
        c.ehlo()
        for i in range(3):
            code, text = c.send_message(f"s{i}@b.test", [f"r{i}@example.test"],
                                        f"Subject: n{i}\n\nbody {i}", ehlo=False)
            assert code == 250, text
        assert c.cmd("QUIT")[0] == 221
    msgs = srv.messages()
    assert len(msgs) == 3
    for i, msg in enumerate(msgs):
        assert msg.startswith(f"Return-Path: <s{i}@b.test>\nDelivered-To: r{i}@example.test\n".encode())
        assert msg.endswith(f"Subject: n{i}\n\nbody {i}\n".encode())
