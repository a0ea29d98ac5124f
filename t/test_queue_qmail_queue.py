"""queue/qmail-queue with a stand-in qmail-queue (t/stubs/qmail-queue: qmail itself
cannot run here) that records descriptors 0 and 1 and exits with a chosen code."""

import os
import re

import pytest

STUB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "stubs", "qmail-queue")
LOCAL = {"rcpthosts": "example.test"}
BODY = "Subject: qq\nMessage-Id: <id-1@b.test>\n\n.dot line\nbody"


@pytest.fixture
def qq(make_config, tmp_path):
    """qq(exit_code, plugin_line) -> (server config, env, path prefix of the recordings)."""
    out = str(tmp_path / "qq")

    def make(code=0, line=f"queue/qmail-queue {STUB}"):
        srv = make_config(["rcpt_ok", line], files=LOCAL)
        return srv, {"QPT_QQ_OUT": out, "QPT_QQ_EXIT": str(code)}, out
    return make


def send(srv, env, sender="a@b.test", rcpts=("u@example.test",)):
    with srv.session(env=env) as c:
        code, text = c.send_message(sender, list(rcpts), BODY)
    return code, text, c.stderr


def test_message_on_fd0_envelope_on_fd1(qq):
    srv, env, out = qq(0)
    code, text, _ = send(srv, env, rcpts=("u@example.test", "v@example.test"))
    assert code == 250 and re.fullmatch(r"2\.0\.0 Queued! \d{10} qp \d+ <id-1@b\.test>", text), text
    with open(out + ".envelope", "rb") as fh:
        assert fh.read() == b"Fa@b.test\0Tu@example.test\0Tv@example.test\0\0"
    with open(out + ".message", "rb") as fh:
        message = fh.read()
    assert message.startswith(b"Received: from [192.0.2.10] (HELO client.example.test) (192.0.2.10)\n"
                              b" by mx.example.test (qpsmtpd_py/")
    assert message.endswith(b"Subject: qq\nMessage-Id: <id-1@b.test>\n\n.dot line\nbody\n")


def test_null_sender_envelope(qq):
    srv, env, out = qq(0)
    assert send(srv, env, sender="")[0] == 250
    with open(out + ".envelope", "rb") as fh:
        assert fh.read() == b"F\0Tu@example.test\0\0"


@pytest.mark.parametrize("exit_code, reply", [(11, 552), (31, 552), (40, 552),
                                              (53, 451), (71, 451), (81, 451), (1, 451)])
def test_exit_codes_map_to_permanent_or_temporary(qq, exit_code, reply):
    srv, env, _ = qq(exit_code)
    code, text, log = send(srv, env)
    assert code == reply and f"Unable to queue message ({exit_code})" in text, text
    assert f"exited {exit_code}" in log


def test_qmailqueue_environment_overrides_the_path(qq):
    srv, env, out = qq(0, "queue/qmail-queue /nonexistent/qmail-queue")
    assert send(srv, env)[0] == 451                       # no such program: temporary
    env["QMAILQUEUE"] = STUB
    code, text, _ = send(srv, env)
    assert code == 250 and "Queued!" in text
    assert os.path.exists(out + ".envelope")


def test_unsafe_path_stops_startup(qq):
    srv, env, _ = qq(0, "queue/qmail-queue bin/qmail-queue;rm")
    with srv.session(env=env, read_greeting=False) as c:
        assert c.closed()
    assert "config/plugins" in c.stderr and "must be absolute" in c.stderr
