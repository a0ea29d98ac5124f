"""A next hop that drips (issue 16 point 8): queue/smtp-forward to a server that
sends one byte every second passes every per-step time-out; the forward's overall
deadline ends it and the client gets 451 within that deadline."""

import socket
import threading
import time

import pytest

from harness import PLUGIN_DIRS
from qpsmtpd_py.helpers.smtpclient import SMTPClient, SMTPError


class DrippingHop:
    """A next hop on 127.0.0.1 that answers quickly until `drip_at` (a reply
    number: 0 = the greeting), then sends that reply one byte per `every` seconds,
    forever (a multi-line reply that never ends)."""

    def __init__(self, drip_at, every=0.5):
        self.drip_at = drip_at
        self.every = every
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        self.listener.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            with conn:
                self.talk(conn)

    def talk(self, conn):
        replies, data = 0, b""
        conn.settimeout(0.2)
        in_data = False
        while not self.stop.is_set():
            if replies == self.drip_at:
                for byte in b"250-still thinking\r\n" * 1000:
                    if self.stop.wait(self.every):
                        return
                    try:
                        conn.sendall(bytes([byte]))
                    except OSError:
                        return
                return
            if replies == 0:
                conn.sendall(b"220 hop.test ESMTP\r\n")
                replies += 1
                continue
            try:
                chunk = conn.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                return
            data += chunk
            while True:
                if in_data:
                    end = data.find(b"\r\n.\r\n")
                    if end < 0:
                        break
                    data, in_data = data[end + 5:], False
                    if replies == self.drip_at:
                        break
                    conn.sendall(b"250 queued\r\n")
                    replies += 1
                    continue
                end = data.find(b"\r\n")
                if end < 0 or replies == self.drip_at:
                    break
                line, data = data[:end], data[end + 2:]
                in_data = line.upper() == b"DATA"
                conn.sendall(b"354 go on\r\n" if in_data else b"250 ok\r\n")
                replies += 1
                if in_data:
                    data = b"\r\n" + data       # so a lone "." line right away matches

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.listener.close()


@pytest.fixture
def hop():
    made = []

    def make(drip_at):
        made.append(DrippingHop(drip_at))
        return made[-1]
    yield make
    for each in made:
        each.close()


@pytest.mark.no_services
def test_smtpclient_deadline_ends_a_dripping_server(hop):
    server = hop(drip_at=0)
    started = time.monotonic()
    with pytest.raises(SMTPError, match=r"too slow.*deadline") as caught:
        SMTPClient.connect("127.0.0.1", server.port, timeout=2, deadline=2.5)
    assert caught.value.reply is None                      # temporary
    assert 2.4 < time.monotonic() - started < 3.5


@pytest.mark.parametrize("drip_at,what", [(0, "greeting"), (5, "reply to the message")])
def test_forward_to_a_dripping_hop_gets_451_within_the_deadline(mail_config, hop, drip_at, what):
    server = hop(drip_at)
    srv = mail_config(plugins=["rcpt_ok", f"queue/smtp-forward 127.0.0.1 {server.port} "
                                          "timeout 2 deadline 3"], files={"loglevel": "6"})
    with srv.session() as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@b.test>")[0] == 250
        assert c.cmd("RCPT TO:<u@example.test>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        started = time.monotonic()
        c.send("Subject: drip\r\n\r\nbody\r\n.\r\n")
        code, lines = c.read_reply()
        took = time.monotonic() - started
        assert code == 451, (what, lines)
        assert lines[0].endswith("Unable to queue message (next hop failed)"), lines
        assert 2.9 < took < 4.5, (what, took)
        assert c.cmd("QUIT")[0] == 221
    assert "too slow: the conversation took over 3s (deadline)" in c.stderr


DRIPPING_PLUGIN = '''
import socket
from qpsmtpd_py.api import DECLINED, OK, Plugin

class TDripCall(Plugin):
    """Reads a reply from a server that drips, in the rcpt hook, with a generous
    per-read time-out and a broad except: only plugin_timeout can end it."""
    def register(self, port, *flags):
        self.port = int(port)
        self.keep = "keepalive" in flags

    def hook_rcpt(self, transaction, rcpt, params):
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            got = b""
            while len(got) < 8:
                got += sock.recv(1)
                if self.keep:
                    self.keepalive()
            sock.close()
        except Exception as exc:
            return DECLINED
        return OK
'''


@pytest.mark.parametrize("keepalive", [False, True])
def test_plugin_network_call_is_cut_at_plugin_timeout(mail_config, hop, tmp_path, keepalive):
    """Any plugin's network call that drips is interrupted after plugin_timeout
    seconds without keepalive(): a temporary failure (450 at RCPT), and the session
    goes on. A plugin that calls
    keepalive() shows progress and may go on."""
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "t_drip_call.py").write_text(DRIPPING_PLUGIN)
    server = hop(drip_at=0)          # 8 bytes take 4 s at one byte per 0.5 s
    flag = " keepalive" if keepalive else ""
    srv = mail_config(f"t_drip_call {server.port}{flag}", final=("queue/maildir {maildir}",),
                      files={"loglevel": "6", "plugin_timeout": "2",
                             "plugin_dirs": [str(tmp_path / "plugins"), *PLUGIN_DIRS]})
    with srv.session() as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@b.test>")[0] == 250
        started = time.monotonic()
        code, text = c.cmd("RCPT TO:<u@example.test>")
        took = time.monotonic() - started
        if keepalive:
            assert code == 250 and 3.5 < took < 6, (code, text, took)
        else:
            assert (code, text) == (450, "4.7.1 Internal error - try again later")
            assert 1.9 < took < 3.5, took
        assert c.cmd("QUIT")[0] == 221
    if not keepalive:
        assert "plugin t_drip_call in hook rcpt made no progress for 2s (plugin_timeout): " \
               "interrupted" in c.stderr
        assert "Traceback" not in c.stderr
