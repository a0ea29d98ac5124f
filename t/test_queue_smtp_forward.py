"""queue/smtp-forward against real Postfix smtp-sink servers: the shared one that
keeps every message, and private ones started here to refuse with 4xx/5xx."""

import glob
import os
import subprocess
import time
import uuid

import pytest

import harness
from tools import require_tool

LOCAL = {"rcpthosts": "example.test"}


def sink_message(marker, timeout=5):
    """The dumped message (text) holding `marker`, from the shared smtp-sink."""
    sink_dir = harness.service_env("QPT_SINK_DIR")
    deadline = time.time() + timeout
    while time.time() < deadline:
        for path in sorted(glob.glob(os.path.join(sink_dir, "*")), key=os.path.getmtime, reverse=True)[:50]:
            with open(path, errors="replace") as fh:
                text = fh.read()
            if marker in text:
                return text
        time.sleep(0.05)
    raise AssertionError(f"no message with {marker} in {sink_dir}")


@pytest.fixture
def own_sink(tmp_path):
    """start(*options) -> port of a private smtp-sink; stopped (by pid) afterwards."""
    procs = []

    def start(*options):
        port = harness.free_port()
        log = open(tmp_path / f"sink-{port}.log", "wb")
        proc = subprocess.Popen(["smtp-sink", "-u", "nobody", "-h", "down.example.test", *options,
                                 f"127.0.0.1:{port}", "10"], stdout=log, stderr=subprocess.STDOUT)
        procs.append(proc)
        assert harness.wait_for_port("127.0.0.1", port), "smtp-sink did not start"
        return port
    require_tool("smtp-sink")
    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)


def forward_config(make_config, host, port, *extra):
    return make_config(["rcpt_ok", f"queue/smtp-forward {host} {port} {' '.join(extra)}".rstrip()],
                       files={**LOCAL, "loglevel": "6"})


def test_message_reaches_the_next_hop_before_250(make_config):
    host, port = harness.service_env("QPT_SINK_HOST"), harness.service_env("QPT_SINK_PORT")
    marker = f"fwd-{uuid.uuid4().hex}"
    srv = forward_config(make_config, host, port)
    body = f"Subject: {marker}\nMessage-Id: <{marker}@b.test>\n\n.leading dot\nline two\n"
    with srv.session() as c:
        code, text = c.send_message("a@b.test", ["u@example.test", "v@example.test"], body)
        assert code == 250 and text.startswith("2.0.0 Queued! "), text
        # a second message on the same connection goes the same way
        code, _ = c.send_message("", ["u@example.test"], f"Subject: {marker}-2\n\nbounce\n",
                                 ehlo=False)
        assert code == 250
    msg = sink_message(f"Subject: {marker}\n")
    assert "X-Helo-Args: mx.example.test\n" in msg                # we say EHLO config/me
    assert "X-Mail-Args: <a@b.test>\n" in msg
    assert "X-Rcpt-Args: <u@example.test>\nX-Rcpt-Args: <v@example.test>\n" in msg
    assert "Received: from [192.0.2.10] (HELO client.example.test) (192.0.2.10)\n" \
           " by mx.example.test (qpsmtpd_py/" in msg
    assert "\n\n.leading dot\nline two\n" in msg               # dot-stuffing undone by the sink
    assert "X-Mail-Args: <>\n" in sink_message(f"Subject: {marker}-2\n")


def test_next_hop_4xx_is_a_temporary_failure(make_config, own_sink):
    port = own_sink("-r", "RCPT")
    with forward_config(make_config, "127.0.0.1", port).session() as c:
        code, text = c.send_message("a@b.test", ["u@example.test"], "Subject: soft\n\nx\n")
    assert code == 452, text
    assert "Unable to queue message: 450 4.3.0 Error: command failed" in text


def test_next_hop_5xx_is_a_permanent_failure(make_config, own_sink):
    port = own_sink("-f", ".", "-B", "554 5.7.1 Message content refused")
    with forward_config(make_config, "127.0.0.1", port).session() as c:
        code, text = c.send_message("a@b.test", ["u@example.test"], "Subject: hard\n\nx\n")
        assert code == 552, text
        assert "Unable to queue message: 554 5.7.1 Message content refused" in text
        assert c.cmd("RSET")[0] == 250                   # the session goes on


def test_unreachable_next_hop_never_gets_250(make_config):
    port = harness.free_port()                           # nothing listens there
    with forward_config(make_config, "127.0.0.1", port).session() as c:
        code, text = c.send_message("a@b.test", ["u@example.test"], "Subject: dead\n\nx\n")
    assert code == 451 and "Unable to queue message (connection refused)" in text, text
    assert f"127.0.0.1:{port}: Connection refused" in c.stderr


def test_refused_greeting_is_temporary(make_config, own_sink):
    port = own_sink("-f", "CONNECT")                     # 5xx greeting: not about this message
    with forward_config(make_config, "127.0.0.1", port).session() as c:
        code, text = c.send_message("a@b.test", ["u@example.test"], "Subject: greet\n\nx\n")
    assert code == 451, text


def test_xclient_passes_the_client_on(make_config, own_sink, tmp_path):
    port = own_sink("-v")                                # -v: log the SMTP dialogue
    srv = forward_config(make_config, "127.0.0.1", port, "xclient")
    with srv.session(env={"TCPREMOTEHOST": "client.example.test"}) as c:
        code, text = c.send_message("a@b.test", ["u@example.test"], "Subject: xc\n\nx\n")
    assert code == 250, text
    dialogue = (tmp_path / f"sink-{port}.log").read_text(errors="replace")
    # smtp-sink offers XCLIENT NAME HELO: only those attributes are sent
    assert "XCLIENT NAME=client.example.test HELO=client.example.test" in dialogue, dialogue


def test_xclient_needs_a_next_hop_that_offers_it(make_config, own_sink):
    port = own_sink("-C")                                # -C: no XCLIENT
    with forward_config(make_config, "127.0.0.1", port, "xclient").session() as c:
        code, text = c.send_message("a@b.test", ["u@example.test"], "Subject: noxc\n\nx\n")
    assert code == 451, text
    assert "does not offer XCLIENT" in c.stderr


def test_missing_host_stops_startup(make_config):
    srv = make_config(["rcpt_ok", "queue/smtp-forward"])
    with srv.session(read_greeting=False) as c:
        assert c.closed()
    assert "queue/smtp-forward: missing argument HOST (the next hop)" in c.stderr


@pytest.mark.parametrize("normalize", [False, True])
def test_nul_never_reaches_the_next_hop(make_config, normalize):
    """`<CR><LF><NUL>.<CR><LF>` (a fake end-of-data for a next hop that drops NULs)
    is refused by default; normalised, the NUL is dropped before forwarding."""
    host, port = harness.service_env("QPT_SINK_HOST"), harness.service_env("QPT_SINK_PORT")
    marker = f"nul-{uuid.uuid4().hex}"
    srv = forward_config(make_config, host, port)
    if normalize:
        srv.write("bare_newlines", "normalize")
    with srv.session() as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@b.test>")[0] == 250
        assert c.cmd("RCPT TO:<u@example.test>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(f"Subject: {marker}\r\n\r\nbefore\r\n".encode()
               + b"\x00.\r\nMAIL FROM:<evil@b.test>\r\n.\r\n")
        code, text = c.read_reply()
        assert code == (250 if normalize else 554), text
    if normalize:
        msg = sink_message(f"Subject: {marker}\n")
        assert "\x00" not in msg and "\nbefore\n.\nMAIL FROM:<evil@b.test>\n" in msg
    else:
        with pytest.raises(AssertionError):
            sink_message(f"Subject: {marker}\n", timeout=1)
