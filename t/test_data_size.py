"""Size limits: SIZE at MAIL, databytes at end of data, and a large message that
must stream through the server without being held in memory."""

import os
import threading

import pytest


@pytest.fixture
def srv(make_config):
    def make(files=None):
        files = dict(files or {})
        files.setdefault("rcpthosts", "example.test")
        return make_config(files=files)
    return make


def test_size_parameter_checked_at_mail(srv):
    s = srv({"databytes": "1000"})
    with s.session() as c:
        assert "SIZE 1000" in c.ehlo()
        assert c.cmd("MAIL FROM:<a@b.test> SIZE=2000") == (
            552, "5.3.4 Message size exceeds fixed maximum message size")
        assert c.cmd("RCPT TO:<u@example.test>")[0] == 503
        assert c.cmd("MAIL FROM:<a@b.test> SIZE=1001")[0] == 552
        code, text = c.cmd("MAIL FROM:<a@b.test> SIZE=abc")
        assert code == 501 and text.startswith("5.5.4 ")
        assert c.cmd("MAIL FROM:<a@b.test> SIZE=1000")[0] == 250
        assert c.cmd("MAIL FROM:<a@b.test> SIZE=999") == (
            250, "2.1.0 <a@b.test>, sender OK - how exciting to get mail from you!")
        assert c.cmd("RCPT TO:<u@example.test>")[0] == 250


def test_size_parameter_without_databytes(srv):
    s = srv()
    with s.session() as c:
        assert not any(k.startswith("SIZE") for k in c.ehlo())
        assert c.cmd("MAIL FROM:<a@b.test> SIZE=999999999")[0] == 250


def _send_body(c, stored_size):
    """A message whose stored form (LF line ends) is exactly stored_size bytes."""
    header = b"Subject: x\r\n\r\n"                  # 12 bytes stored
    body_len = stored_size - 12
    full, rest = divmod(body_len, 50)
    body = (b"a" * 49 + b"\r\n") * full + (b"b" * (rest - 1) + b"\r\n" if rest else b"")
    c.send(header + body + b".\r\n")
    return c.read_reply()


@pytest.mark.parametrize("size, accepted", [(1000, True), (1001, False), (2000, False)])
def test_databytes_at_end_of_data(srv, size, accepted):
    s = srv({"databytes": "1000"})
    with s.session() as c:
        c.cmd("HELO client.test")
        c.cmd("MAIL FROM:<a@b.test>")
        c.cmd("RCPT TO:<u@example.test>")
        assert c.cmd("DATA")[0] == 354
        code, lines = _send_body(c, size)
        if accepted:
            assert code == 250, lines
        else:
            assert b"".join(c.raw) == b"552 Message too big!\r\n"
        # the whole body was read: the next command gets its own answer
        assert c.cmd("RCPT TO:<u@example.test>") == (503, "Use MAIL before RCPT")
        assert c.cmd("NOOP") == (250, "OK")
    assert len(s.messages()) == (1 if accepted else 0)


def test_too_big_after_ehlo_then_next_message(srv):
    s = srv({"databytes": "1000"})
    with s.session() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@b.test>")
        c.cmd("RCPT TO:<u@example.test>")
        c.cmd("DATA")
        c.send(b"Subject: big\r\n\r\n" + b"x" * 70 + b"\r\n" + (b"y" * 70 + b"\r\n") * 30 + b".\r\n")
        assert c.read_reply() == (552, ["5.3.4 Message too big!"])
        code, text = c.send_message("a@b.test", ["u@example.test"], "Subject: small\n\nok", ehlo=False)
        assert code == 250, text
    (msg,) = s.messages()
    assert msg.endswith(b"Subject: small\n\nok\n")


def _vm_hwm_kb(pid):
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_twenty_megabytes_stream_through(srv):
    s = srv()
    line = b"0123456789" * 7 + b"abcdef\r\n"          # 78 octets
    count = 20 * 1024 * 1024 // len(line)
    block = line * 1000
    with s.session() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@b.test>")
        c.cmd("RCPT TO:<u@example.test>")
        assert c.cmd("DATA")[0] == 354

        def writer():
            c.sock.sendall(b"Subject: big\r\n\r\n")
            for _ in range(count // 1000):
                c.sock.sendall(block)
            c.sock.sendall(line * (count % 1000) + b".\r\n")
        thread = threading.Thread(target=writer)
        thread.start()
        code, lines = c.read_reply()
        thread.join()
        assert code == 250, lines
        peak_kb = _vm_hwm_kb(c.proc.pid)
        assert c.cmd("QUIT")[0] == 221
    assert peak_kb < 100 * 1024, f"server peak RSS {peak_kb} kB"
    (msg,) = s.messages()
    body = msg.split(b"\n\n", 1)[1]
    assert len(body) == count * (len(line) - 1)
    assert body[:78] == line[:-2] + b"\n" + line[:1]
    assert os.path.getsize(os.path.join(s.maildir, "new", os.listdir(os.path.join(s.maildir, "new"))[0])) > 20_000_000


@pytest.mark.parametrize("files, accepted", [({"max_recipients": "3"}, 3), ({}, 1000)])
def test_recipient_limit(make_config, files, accepted):
    """Past max_recipients (default 1000, as Postfix) each RCPT gets 452 4.5.3 and
    the message goes to the recipients accepted (issue 16 point 4)."""
    srv = make_config(files={"rcpthosts": "example.test", **files})
    with srv.session() as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@b.test>")[0] == 250
        batch = b"".join(b"RCPT TO:<u%d@example.test>\r\n" % i for i in range(accepted + 2))
        c.send(batch)                                   # pipelined, as a mass mailer does
        codes = [c.read_reply() for _ in range(accepted + 2)]
        assert [code for code, _ in codes] == [250] * accepted + [452, 452]
        assert codes[-1][1] == ["4.5.3 Too many recipients"]
        assert c.cmd("DATA")[0] == 354
        c.send(b"Subject: many\r\n\r\nbody\r\n.\r\n")
        assert c.read_reply()[0] == 250
    (msg,) = srv.messages()
    assert msg.count(b"Delivered-To: ") == accepted
