"""Session-ending signals raised inside plugins end the session (issue 9, bug 1).

A plugin that calls respond_and_disconnect, or whose own I/O finds the client
gone, must not be caught by the plugin guard: no FATAL PLUGIN ERROR, no stray
`450 Internal error`, and the connection really closes after the disconnect hooks.
"""

import pytest


@pytest.mark.parametrize("hook, before", [
    ("rcpt", ["MAIL FROM:<a@b.test>"]),
    ("mail", []),
    ("helo", None),
    ("data_post", "message"),
])
def test_respond_and_disconnect_from_plugin(mail_config, tmp_path, hook, before):
    marks = tmp_path / "marks"
    cfg = mail_config(f"t_hangup {marks} {hook} 421 4.7.0 go away", files={"loglevel": "6"})
    with cfg.session() as c:
        if before is None:
            code, lines = c.cmd("HELO client.example.test")
        else:
            c.ehlo()
            if before == "message":
                assert c.cmd("MAIL FROM:<a@b.test>")[0] == 250
                assert c.cmd("RCPT TO:<u@example.test>")[0] == 250
                assert c.cmd("DATA")[0] == 354
                c.send(b"Subject: x\r\n\r\nbody\r\n.\r\n")
                code, lines = c.read_reply()
            else:
                for line in before:
                    assert c.cmd(line)[0] == 250
                code, lines = c.cmd(f"{'RCPT TO:<u@example.test>' if hook == 'rcpt' else 'MAIL FROM:<a@b.test>'}")
        last = lines[-1] if isinstance(lines, list) else lines
        assert code == 421 and last.endswith("go away"), lines
        # the server closed the connection: no stray 450 for a next command
        c.send(b"NOOP\r\n")
        assert c.closed(), "connection still open after respond_and_disconnect"
        log = c.stderr
    assert "FATAL PLUGIN ERROR" not in log, log
    assert "Internal error" not in log
    assert marks.read_text() == "disconnect\n"          # disconnect hooks ran once
    assert cfg.messages() == []
