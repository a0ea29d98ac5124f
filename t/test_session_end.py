"""Session-ending signals raised inside plugins end the session (issue 9, bug 1).

A plugin that calls respond_and_disconnect, or whose own I/O finds the client
gone, must not be caught by the plugin guard: no FATAL PLUGIN ERROR, no stray
`450 Internal error`, and the connection really closes after the disconnect hooks.
Checked in every server mode: single-connection, prefork and forkserver.
"""

import contextlib

import pytest

from serverproc import Server

HOOKS = [("rcpt", "rcpt"), ("mail", "mail"), ("helo", "helo"), ("data_post", "message")]


def dialogue(c, until):
    """Run the session up to the command the plugin answers; its (code, text)."""
    if until == "helo":
        return c.cmd("HELO client.example.test")
    c.ehlo()
    if until == "mail":
        return c.cmd("MAIL FROM:<a@b.test>")
    assert c.cmd("MAIL FROM:<a@b.test>")[0] == 250
    if until == "rcpt":
        return c.cmd("RCPT TO:<u@example.test>")
    assert c.cmd("RCPT TO:<u@example.test>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(b"Subject: x\r\n\r\nbody\r\n.\r\n")
    return c.read_reply()


@contextlib.contextmanager
def server_mode(mode, cfg):
    """(client, log reader) for one session in `mode`."""
    if mode == "single":
        with cfg.session() as c:
            yield c, lambda: c.stderr
        return
    args = ["--children", "1"] if mode == "qpsmtpd-prefork" else []
    with Server(mode, cfg, *args) as server:
        with server.client() as c:
            yield c, lambda: server.log


@pytest.mark.parametrize("mode", ["single", "qpsmtpd-prefork", "qpsmtpd-forkserver"])
@pytest.mark.parametrize("hook, until", HOOKS)
def test_respond_and_disconnect_from_plugin(mail_config, tmp_path, mode, hook, until):
    marks = tmp_path / "marks"
    cfg = mail_config(f"t_hangup {marks} {hook} 421 4.7.0 go away", files={"loglevel": "6"})
    with server_mode(mode, cfg) as (c, log):
        code, text = dialogue(c, until)
        last = text[-1] if isinstance(text, list) else text
        assert code == 421 and last.endswith("go away"), text
        # the server closed the connection: no stray 450 for a next command
        try:
            c.send(b"NOOP\r\n")
        except OSError:
            pass
        assert c.closed(), "connection still open after respond_and_disconnect"
        if mode != "single":
            assert marks.exists() and marks.read_text() == "disconnect\n"
    assert "FATAL PLUGIN ERROR" not in log(), log()
    assert "Internal error" not in log()
    assert marks.read_text() == "disconnect\n"          # disconnect hooks ran once
    assert cfg.messages() == []
