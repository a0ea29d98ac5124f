def test_message_lands_in_maildir(make_config):
    srv = make_config(files={"rcpthosts": "example.test"})
    with srv.session() as c:
        assert c.code == 220 and "ESMTP qpsmtpd" in c.text
        code, text = c.send_message("a@b.test", ["u@example.test"], "Subject: x\n\nhello")
        assert code == 250, text
        assert c.cmd("QUIT")[0] == 221
    (msg,) = srv.messages()
    assert msg.startswith(b"Return-Path: <a@b.test>\nDelivered-To: u@example.test\nReceived: from ")
    assert msg.endswith(b"\nhello\n")
