"""Single-connection mode (`qpsmtpd` under tcpserver/inetd/swaks --pipe): the
ucspi-tcp environment, RELAYCLIENT, trace headers, and a real client (swaks)."""

import email.utils
import re
import subprocess
import time

import pytest

from harness import QPSMTPD

ME = "mx.example.test"


def headers_of(msg):
    """The header block of a delivered message as {name: [values]} in order (unfolded
    values keep their newline)."""
    head = msg.split(b"\n\n", 1)[0].decode()
    fields = []
    for line in head.split("\n"):
        if line[:1] in (" ", "\t"):
            fields[-1][1] += "\n" + line
        else:
            name, value = line.split(":", 1)
            fields.append([name, value.lstrip(" ")])
    return fields


def values(fields, name):
    return [v for n, v in fields if n.lower() == name.lower()]


TCP_ENV = {"TCPREMOTEIP": "198.51.100.7", "TCPREMOTEHOST": "client.example.net",
           "TCPREMOTEINFO": "joe", "TCPREMOTEPORT": "40000", "TCPLOCALIP": "203.0.113.1",
           "TCPLOCALPORT": "25"}


def test_tcpserver_environment_in_greeting_and_received(mail_config):
    srv = mail_config()
    before = time.time()
    with srv.session(env=TCP_ENV) as c:
        lines = c.cmd("EHLO helo.example.net")[1].split("\n")
        assert lines[0] == f"{ME} Hi joe@client.example.net [198.51.100.7]"
        code, text = c.send_message("a@b.test", ["u@example.test"], "Subject: env\n\nbody", ehlo=False)
        assert code == 250, text
    (msg,) = srv.messages()
    fields = headers_of(msg)
    (received,) = values(fields, "Received")
    match = re.fullmatch(
        r"from joe@client\.example\.net \(HELO helo\.example\.net\) \(198\.51\.100\.7\)\n"
        rf" by {re.escape(ME)} \(qpsmtpd_py/(\S+)\) with ESMTP; (.+)", received)
    assert match, received
    import qpsmtpd_py
    assert match.group(1) == qpsmtpd_py.__version__
    date = email.utils.parsedate_to_datetime(match.group(2))
    assert date.tzinfo is not None and abs(date.timestamp() - before) < 60
    assert re.fullmatch(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4}", match.group(2))
    # the order qpsmtpd 0.94 writes: queue headers, Received, A-R, then the client's
    assert [n for n, _ in fields] == ["Return-Path", "Delivered-To", "Received",
                                      "Authentication-Results", "Subject"]


def test_remote_host_without_info_and_helo_protocol(mail_config):
    srv = mail_config()
    with srv.session(env={"TCPREMOTEIP": "198.51.100.8", "TCPREMOTEHOST": "host.example.net"}) as c:
        assert c.cmd("HELO old.example.net")[1] == \
            f"{ME} Hi host.example.net [198.51.100.8]; I am so happy to meet you."
        code, text = c.send_message("a@b.test", ["u@example.test"], "Subject: helo\n\nbody", ehlo=False)
        assert code == 250
    (received,) = values(headers_of(srv.messages()[0]), "Received")
    assert received.startswith("from host.example.net (HELO old.example.net) (198.51.100.8)\n"
                               f" by {ME} (qpsmtpd_py/")
    assert re.search(r"\) with SMTP; \w{3}, ", received), received


def test_ip_only_client(mail_config):
    srv = mail_config()
    with srv.session(env={"TCPREMOTEIP": "2001:db8::5"}) as c:
        lines = c.cmd("EHLO v6.example.net")[1].split("\n")
        assert lines[0] == f"{ME} Hi [2001:db8::5] [2001:db8::5]"


def test_relayclient_lets_the_client_relay(mail_config):
    srv = mail_config(plugins=["relay", "rcpt_ok", "queue/maildir {maildir}"])
    with srv.session(env={"RELAYCLIENT": ""}) as c:
        code, text = c.send_message("a@b.test", ["someone@far-away.test"], "Subject: relay\n\nout")
        assert code == 250, text
    (msg,) = srv.messages()
    assert b"Delivered-To: someone@far-away.test\n" in msg
    with srv.session() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@b.test>")
        assert c.cmd("RCPT TO:<someone@far-away.test>") == (550, "5.7.1 Relaying denied (#5.7.1)")


def test_relayclients_file(mail_config):
    srv = mail_config(plugins=["relay", "rcpt_ok", "queue/maildir {maildir}"],
                 files={"relayclients": "198.51.100.0/24"})
    with srv.session(env={"TCPREMOTEIP": "198.51.100.9"}) as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@b.test>")
        assert c.cmd("RCPT TO:<x@far-away.test>")[0] == 250
    with srv.session(env={"TCPREMOTEIP": "198.51.101.9"}) as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@b.test>")
        assert c.cmd("RCPT TO:<x@far-away.test>")[0] == 550


def test_authentication_results_once_per_message(mail_config):
    """qpsmtpd bug #320: results of transaction A must not leak into message B."""
    srv = mail_config(plugins=["t_authres", "rcpt_ok", "queue/maildir {maildir}"])
    with srv.session() as c:
        c.ehlo()
        for sender in ("x@b.test", "y@b.test", "x@c.test"):
            code, text = c.send_message(sender, ["u@example.test"], f"Subject: {sender}\n\nbody", ehlo=False)
            assert code == 250, text
        # an aborted transaction with results, then a clean message
        c.cmd("MAIL FROM:<x@d.test>")
        c.cmd("RSET")
        code, text = c.send_message("z@b.test", ["u@example.test"], "Subject: z\n\nbody", ehlo=False)
        assert code == 250
    results = [values(headers_of(m), "Authentication-Results") for m in srv.messages()]
    assert results == [
        [f"{ME}; auth=none; x-test=pass smtp.mailfrom=x@b.test"],
        [f"{ME}; auth=none"],
        [f"{ME}; auth=none; x-test=pass smtp.mailfrom=x@c.test"],
        [f"{ME}; auth=none"],
    ]


def test_me_auth_results_setting(mail_config):
    srv = mail_config(files={"me-auth-results": "ar.example.test"})
    with srv.session() as c:
        assert c.send_message("a@b.test", ["u@example.test"], "Subject: a\n\nb")[0] == 250
    assert values(headers_of(srv.messages()[0]), "Authentication-Results") == ["ar.example.test; auth=none"]
    srv.write("me-auth-results", "none")
    with srv.session() as c:
        assert c.send_message("a@b.test", ["u@example.test"], "Subject: a\n\nb")[0] == 250
    assert values(headers_of(srv.messages()[1]), "Authentication-Results") == []


def test_swaks_pipe(mail_config):
    srv = mail_config()
    env = srv.env()
    proc = subprocess.run(
        ["swaks", "--pipe", QPSMTPD, "--to", f"postmaster@{ME}", "--from", "a@b.test",
         "--helo", "swaks.example.test", "--header", "Subject: via swaks", "--body", "swaks body"],
        env=env, cwd=srv.tmp, capture_output=True, timeout=60)
    out = proc.stdout.decode()
    assert proc.returncode == 0, out + proc.stderr.decode()
    assert "\n<-  250 2.0.0 Queued! " in out and "\n<-  221 2.0.0 " in out, out
    (msg,) = srv.messages()
    assert msg.startswith(f"Return-Path: <a@b.test>\nDelivered-To: postmaster@{ME}\nReceived: from ".encode())
    assert b"(HELO swaks.example.test)" in msg
    assert b"\nSubject: via swaks\n" in msg and msg.rstrip().endswith(b"swaks body")


def test_swaks_pipe_refused_recipient(mail_config):
    srv = mail_config()
    proc = subprocess.run(
        ["swaks", "--pipe", QPSMTPD, "--to", "x@elsewhere.test", "--from", "a@b.test"],
        env=srv.env(), cwd=srv.tmp, capture_output=True, timeout=60)
    assert proc.returncode != 0
    assert "550 5.7.1 Relaying denied" in proc.stdout.decode()
    assert srv.messages() == []


@pytest.mark.no_services
def test_version_option():
    out = subprocess.run([QPSMTPD, "--version"], capture_output=True, timeout=30, text=True)
    import qpsmtpd_py
    assert out.returncode == 0 and qpsmtpd_py.__version__ in out.stdout
