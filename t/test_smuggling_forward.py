"""SMTP smuggling through queue/smtp-forward (issue 16 point 10): messages whose
body hides an end-of-data in a non-standard form (bare LF, bare CR, NUL ...)
followed by a second transaction must never reach the next hop as two messages.
A recording next hop parses what it gets the way a lenient MTA would (any of
\\n.\\n, \\r\\n.\\r\\n ends DATA) and counts the MAIL commands it sees."""

import socket
import threading

import pytest

SMUGGLED = (b"MAIL FROM:<evil@attacker.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\n"
            b"Subject: smuggled\r\n\r\nevil\r\n")
VECTORS = {
    "LF.LF": b"\n.\n", "LF.CRLF": b"\n.\r\n", "CRLF.LF": b"\r\n.\n", "CR.CR": b"\r.\r",
    "CRLF.CR": b"\r\n.\r", "CR.CRLF": b"\r.\r\n", "LF.CR": b"\n.\r", "CRLF NUL.CRLF": b"\r\n\0.\r\n",
    "CRLF.NUL CRLF": b"\r\n.\0\r\n", "CRLF..LF": b"\r\n..\n", "LF..CRLF": b"\n..\r\n",
}
LENIENT_END = (b"\r\n.\r\n", b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r")


class RecordingHop:
    """A next hop that logs every command and ends DATA at the first end-of-data
    form any MTA might take (so smuggled transactions would show as commands)."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.commands = []
        self.messages = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                self.talk(conn)

    def talk(self, conn):
        conn.sendall(b"220 hop.test ESMTP\r\n")
        data = b""
        in_data = False
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
            while True:
                if in_data:
                    ends = [(data.find(e), e) for e in LENIENT_END if data.find(e) >= 0]
                    if not ends:
                        break
                    at, end = min(ends)
                    self.messages.append(data[:at])
                    data, in_data = data[at + len(end):], False
                    conn.sendall(b"250 queued\r\n")
                    continue
                at = data.find(b"\n")
                if at < 0:
                    break
                line, data = data[:at].rstrip(b"\r"), data[at + 1:]
                self.commands.append(line)
                if line.upper() == b"DATA":
                    in_data = True
                    data = b"\r\n" + data
                    conn.sendall(b"354 go on\r\n")
                elif line.upper() == b"QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                else:
                    conn.sendall(b"250 ok\r\n")

    def close(self):
        self.listener.close()


@pytest.fixture
def hop():
    made = RecordingHop()
    yield made
    made.close()


@pytest.mark.parametrize("policy", ["reject", "normalize"])
def test_no_vector_smuggles_a_second_message_onward(mail_config, hop, policy):
    srv = mail_config(plugins=["rcpt_ok", f"queue/smtp-forward 127.0.0.1 {hop.port}"],
                      files={"bare_newlines": policy})
    accepted = 0
    with srv.session() as c:
        c.ehlo()
        for name, vector in VECTORS.items():
            assert c.cmd("MAIL FROM:<a@b.test>")[0] == 250
            assert c.cmd("RCPT TO:<u@example.test>")[0] == 250
            assert c.cmd("DATA")[0] == 354
            c.send(b"Subject: " + name.encode() + b"\r\n\r\nbefore" + vector + SMUGGLED + b".\r\n")
            code = c.read_reply()[0]
            assert code in (250, 554), (name, code)
            if policy == "reject":
                assert code == 554, name
            accepted += code == 250
        assert c.cmd("QUIT")[0] == 221
    mails = [cmd for cmd in hop.commands if cmd.upper().startswith(b"MAIL FROM")]
    assert len(mails) == accepted == len(hop.messages), (mails, accepted)
    assert not any(b"victim" in cmd for cmd in hop.commands)
    assert not any(b"evil@attacker" in cmd for cmd in hop.commands)
    for message in hop.messages:      # what went onward is plain CRLF text, one message each
        assert b"\0" not in message
        assert b"\r\n.\r\n" not in message
