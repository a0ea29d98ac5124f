"""queue/postfix-queue into real Postfix cleanup services: the shared relay (t/services
component postfix, which passes everything on to the shared smtp-sink) over its unix
socket, and a private one (t/mta.py PostfixRelay) with cleanup on a TCP listener,
header_checks and a small message_size_limit."""

import os
import subprocess
import uuid

import pytest

import harness
from mta import PostfixRelay, run
from test_queue_smtp_forward import sink_message
from tools import require_tool

LOCAL = {"rcpthosts": "example.test", "loglevel": "6"}


def shared_socket():
    return os.path.join(harness.service_env("QPT_STATE"), "postfix", "spool", "public", "cleanup")


def config(make_config, args, files=None):
    return make_config(["rcpt_ok", f"queue/postfix-queue {args}".rstrip()],
                       files={**LOCAL, **(files or {})})


def send(srv, marker, subject=None, env=None, body="line\n"):
    text = f"Message-Id: <{marker}@b.test>\nSubject: {subject or marker}\n\n{body}"
    with srv.session(env=env) as c:
        code, reply = c.send_message("a@b.test", ["u@example.test", "v@example.test"], text)
    return code, reply, c


def test_message_goes_through_postfix_to_the_sink(make_config):
    marker = f"pfq-{uuid.uuid4().hex}"
    long_line = "x" * 3000                                 # split into continued records
    code, reply, c = send(config(make_config, shared_socket()), marker,
                          body=f".dot\n{long_line}\nlast line without end")
    assert code == 250, reply
    assert f"Queued! <{marker}@b.test> (Queue-Id: " in reply
    queue_id = reply.rsplit("Queue-Id: ", 1)[1].rstrip(")")
    assert f"pass, queued as {queue_id}" in c.stderr
    msg = sink_message(f"Subject: {marker}\n", timeout=30)
    assert "X-Mail-Args: <a@b.test>\n" in msg                        # the envelope is ours
    assert "X-Rcpt-Args: <u@example.test> ORCPT=rfc822;u@example.test\n" \
           "X-Rcpt-Args: <v@example.test> ORCPT=rfc822;v@example.test\n" in msg
    assert "Received: from [192.0.2.10] (HELO client.example.test) (192.0.2.10)\n" in msg
    # Postfix's smtp client folds lines over 998 characters on the way to the sink
    assert f"\n.dot\n{long_line}\nlast line without end\n" in msg.replace("\n ", "")


def test_cleanup_sockets_are_tried_in_order(make_config, tmp_path):
    marker = f"pfq-{uuid.uuid4().hex}"
    srv = config(make_config, "", files={
        "cleanup_sockets": [str(tmp_path / "missing"), shared_socket()]})
    code, reply, c = send(srv, marker)
    assert code == 250, reply
    assert f"cannot reach cleanup at {tmp_path / 'missing'}" in c.stderr
    sink_message(f"Subject: {marker}\n", timeout=30)


def test_postfixqueue_environment_wins(make_config, tmp_path):
    marker = f"pfq-{uuid.uuid4().hex}"
    srv = config(make_config, str(tmp_path / "missing"),
                 files={"cleanup_sockets": str(tmp_path / "missing-too")})
    code, reply, _ = send(srv, marker, env={"POSTFIXQUEUE": shared_socket()})
    assert code == 250, reply


def test_cleanup_down_is_451(make_config, tmp_path):
    code, reply, c = send(config(make_config, str(tmp_path / "no-socket")), "down")
    assert code == 451 and "cannot reach the Postfix cleanup service" in reply, reply
    port = harness.free_port()
    code, reply, _ = send(config(make_config, f"127.0.0.1:{port}"), "down")
    assert code == 451 and f"127.0.0.1:{port}: Connection refused" in reply, reply


@pytest.fixture(scope="module")
def private_postfix(tmp_path_factory):
    """A private Postfix relaying to the shared sink, cleanup also on 127.0.0.1:<port>,
    header_checks (REJECT with 5.7.1 and with 4.7.1, by Subject), message_size_limit 20000."""
    require_tool("postfix")
    pf = PostfixRelay(harness.service_env("QPT_SINK_PORT"))
    try:
        checks = os.path.join(pf.etc, "header_checks")
        with open(checks, "w") as fh:
            fh.write("/^Subject: reject-me/ REJECT 5.7.1 go away\n"
                     "/^Subject: defer-me/ REJECT 4.7.1 come back later\n")
        port = harness.free_port()
        for args in (["-e", f"header_checks = regexp:{checks}", "message_size_limit = 20000"],
                     ["-Me", f"127.0.0.1:{port}/inet = 127.0.0.1:{port} inet n - n - 0 cleanup"]):
            code, out = run(["postconf", "-c", pf.etc, *args])
            assert code == 0, out
        code, out = run(["postfix", "-c", pf.etc, "reload"], stdin=subprocess.DEVNULL)
        assert code == 0, out
        assert harness.wait_for_port("127.0.0.1", port), pf.log()
        pf.cleanup_address = f"127.0.0.1:{port}"
        yield pf
    finally:
        pf.stop()


def test_tcp_cleanup_and_flags(make_config, private_postfix):
    where = private_postfix.cleanup_address
    marker = f"pfq-{uuid.uuid4().hex}"
    code, reply, _ = send(config(make_config, where), marker, subject=f"reject-me {marker}")
    assert code == 250, reply                      # no FLAG_FILTER: header_checks not applied
    srv = config(make_config, f"{where} FLAG_FILTER FLAG_MAP_OK")
    code, reply, c = send(srv, f"{marker}-2", subject=f"reject-me {marker}")
    assert code == 552 and "5.7.1 go away" in reply, reply
    code, reply, _ = send(srv, f"{marker}-3", subject=f"defer-me {marker}")
    assert code == 452 and "4.7.1 come back later" in reply, reply
    assert "fail, cleanup status" in c.stderr


def test_message_too_big_is_permanent(make_config, private_postfix):
    srv = config(make_config, private_postfix.cleanup_address)
    code, reply, _ = send(srv, f"pfq-{uuid.uuid4().hex}", body=("y" * 80 + "\n") * 400)
    assert code == 552 and "message file too big" in reply, reply


def test_unknown_flag_warns_and_garbage_stops_startup(make_config):
    srv = config(make_config, f"{shared_socket()} FLAG_MASK_EXTERNAL FLAG_FROM_THE_FUTURE")
    code, reply, c = send(srv, f"pfq-{uuid.uuid4().hex}")
    assert code == 250, reply
    assert "Ignoring unknown cleanup flag FLAG_FROM_THE_FUTURE" in c.stderr
    srv = config(make_config, f"{shared_socket()} FLAG_FILTER filter")
    with srv.session(read_greeting=False) as c:
        assert c.closed()
    assert "'filter' is neither a socket" in c.stderr
