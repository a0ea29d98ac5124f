"""queue/exim-bsmtp into the real Exim (t/services component exim, QPT_EXIM_BIN) run
with a config of its own (t/mta.py EximClient: every address relayed to the shared
smtp-sink), plus an acl_not_smtp and a small message_size_limit."""

import os
import uuid

import pytest

import harness
from mta import EximClient
from test_queue_smtp_forward import sink_message
from tools import exim_bin, require_tool

LOCAL = {"rcpthosts": "example.test", "loglevel": "6"}
ACL = """acl_not_smtp = acl_batch

begin acl
acl_batch:
  deny condition = ${if match{$h_subject:}{reject-me}}
       message = 5.7.1 go away
  defer condition = ${if match{$h_subject:}{defer-me}}
       message = 4.3.0 try later
  accept

"""


@pytest.fixture(scope="module")
def exim():
    require_tool("exim")
    ex = EximClient(exim_bin(), harness.service_env("QPT_SINK_PORT"))
    with open(ex.conf) as fh:
        text = fh.read()
    text = text.replace("message_size_limit = 50M\n", "message_size_limit = 20k\n")
    text = text.replace("\nbegin routers\n", "\n" + ACL + "begin routers\n", 1)
    with open(ex.conf, "w") as fh:
        fh.write(text)
    yield ex
    ex.cleanup()


def config(make_config, args):
    return make_config(["rcpt_ok", f"queue/exim-bsmtp {args}"], files=LOCAL)


def send(srv, marker, subject=None, body="line\n"):
    text = f"Message-Id: <{marker}@b.test>\nSubject: {subject or marker}\n\n{body}"
    with srv.session() as c:
        code, reply = c.send_message("a@b.test", ["u@example.test", "v@example.test"], text)
    return code, reply, c


def test_message_goes_through_exim_to_the_sink(make_config, exim):
    marker = f"bsmtp-{uuid.uuid4().hex}"
    srv = config(make_config, f"exim_path {exim.bin} config {exim.conf}")
    code, reply, c = send(srv, marker, body=".leading dot\n..two dots\nlast")
    assert code == 250 and reply.endswith("Queued!"), reply
    assert "pass, enqueued to exim via BSMTP" in c.stderr
    assert "<= a@b.test U=root P=local-bsmtp" in exim.mainlog()     # root is trusted: our sender
    msg = sink_message(f"Subject: {marker}\n", timeout=30)
    assert "X-Mail-Args: <a@b.test>" in msg
    assert "X-Rcpt-Args: <u@example.test>" in msg and "X-Rcpt-Args: <v@example.test>" in msg
    assert "Received: from [192.0.2.10] (HELO client.example.test) (192.0.2.10)\n" in msg
    assert "\n\n.leading dot\n..two dots\nlast\n" in msg


def test_acl_deny_is_permanent_and_defer_temporary(make_config, exim):
    srv = config(make_config, f"exim_path {exim.bin} config {exim.conf}")
    code, reply, c = send(srv, f"bsmtp-{uuid.uuid4().hex}", subject="reject-me")
    assert code == 552 and reply.endswith("5.7.1 go away"), reply
    assert "exim: 550 5.7.1 go away" in c.stderr
    code, reply, _ = send(srv, f"bsmtp-{uuid.uuid4().hex}", subject="defer-me")
    assert code == 452 and reply.endswith("4.3.0 try later"), reply


def test_message_too_big(make_config, exim):
    srv = config(make_config, f"exim_path {exim.bin} config {exim.conf}")
    code, reply, _ = send(srv, f"bsmtp-{uuid.uuid4().hex}", body=("z" * 99 + "\n") * 300)
    assert code == 552 and "Message size exceeds maximum permitted" in reply, reply


def test_broken_exim_is_451(make_config, exim, tmp_path):
    broken = tmp_path / "broken.conf"
    broken.write_text(open(exim.conf).read() + "\nno_such_option = 1\n")
    os.chmod(broken, 0o644)
    code, reply, c = send(config(make_config, f"exim_path {exim.bin} config {broken}"), "x")
    assert code == 451 and "Internal error enqueuing mail" in reply, reply
    assert "Exim configuration error" in c.stderr
    code, reply, c = send(config(make_config, f"exim_path {tmp_path}/no-exim"), "x")
    assert code == 451 and "Internal error enqueuing mail" in reply, reply
    assert "Could not find exim at" in c.stderr
