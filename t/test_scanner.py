"""The scanner client for content plugins (qpsmtpd_py/helpers/scanner.py) against the real
clamd and spamd, stalled loopback servers, and the body API that keeps
transaction.data_size right (qpsmtpd_py/transaction.py)."""

import io
import socket
import struct
import threading
import time

import pytest

from harness import REAL_PLUGINS, TEST_PLUGINS, service_env
from qpsmtpd_py.constants import DECLINED, DENYSOFT, LOGERROR, LOGWARN
from qpsmtpd_py.header import Header
from qpsmtpd_py.helpers.scanner import Scanner, ScannerError, parse_address
from qpsmtpd_py.transaction import Transaction

EICAR = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def message(tmp_path, body, header="Subject: test\nFrom: a@b.test\nTo: u@example.test\n",
            threshold=10000):
    txn = Transaction(str(tmp_path), threshold)
    txn.header = Header.parse(header)
    txn.body_append(body)
    return txn


def instream(txn):
    def talk(conn):
        conn.send(b"zINSTREAM\0")
        conn.send_message(txn, frame=lambda chunk: struct.pack(">I", len(chunk)) + chunk)
        conn.send(b"\0\0\0\0")
        return conn.read_until(b"\0")
    return talk


@pytest.fixture(scope="module")
def clamd():
    return {"unix": service_env("QPT_CLAMD_SOCKET"),
            "tcp": f"{service_env('QPT_CLAMD_HOST')}:{service_env('QPT_CLAMD_PORT')}"}


@pytest.fixture(scope="module")
def spamd():
    return {"unix": service_env("QPT_SPAMD_SOCKET"),
            "tcp": f"{service_env('QPT_SPAMD_HOST')}:{service_env('QPT_SPAMD_PORT')}"}


class StalledServer:
    """A loopback TCP server that accepts, reads what it is sent, and answers with
    `drip` (one byte per `interval`, never a complete answer) or nothing at all."""

    def __init__(self, drip=b"", interval=0.1):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.address = "127.0.0.1:%d" % self.listener.getsockname()[1]
        self.drip, self.interval = drip, interval
        self.received = bytearray()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        conn.settimeout(self.interval)
        with conn:
            while not self.stop.is_set():
                try:
                    data = conn.recv(65536)
                    if not data:
                        break
                    self.received += data
                except socket.timeout:
                    pass
                if self.drip:
                    try:
                        conn.sendall(self.drip)
                    except OSError:
                        break

    def close(self):
        self.stop.set()
        self.listener.close()
        self.thread.join(2)


@pytest.fixture
def stalled():
    servers = []

    def make(**kw):
        servers.append(StalledServer(**kw))
        return servers[-1]
    yield make
    for server in servers:
        server.close()


class LogPlugin:
    def __init__(self):
        self.lines = []

    def log(self, level, *msg):
        self.lines.append((level, " ".join(msg)))


# -- clamd -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["unix", "tcp"])
def test_clamd_ping(clamd, kind):
    scanner = Scanner(clamd[kind], timeout=5, name="clamd")
    reply = scanner.exchange(lambda conn: (conn.send(b"zPING\0"), conn.read_until(b"\0"))[1])
    assert reply == b"PONG\0"


@pytest.mark.parametrize("kind", ["unix", "tcp"])
def test_clamd_instream_finds_eicar_and_passes_a_clean_message(clamd, kind, tmp_path):
    scanner = Scanner(clamd[kind], timeout=20, name="clamd")
    assert scanner.exchange(instream(message(tmp_path, EICAR + "\n"))).endswith(b" FOUND\0")
    assert scanner.exchange(instream(message(tmp_path, "hello\n"))) == b"stream: OK\0"


def test_clamd_big_spooled_message_is_streamed_in_chunks(clamd, tmp_path):
    txn = message(tmp_path, "x" * 300_000 + "\n" + EICAR + "\n", threshold=1000)
    assert txn._spooled
    assert Scanner(clamd["unix"], timeout=20).exchange(instream(txn)).endswith(b" FOUND\0")


def test_max_bytes_caps_what_is_sent(clamd, tmp_path):
    """The virus sits after the first 200 bytes: with max_bytes 200 clamd never sees it."""
    txn = message(tmp_path, "a" * 300 + "\n" + EICAR + "\n")
    scanner = Scanner(clamd["unix"], timeout=20, max_bytes=200)
    seen = {}

    def talk(conn):
        reply = instream(txn)(conn)
        seen.update(sent=conn.sent, truncated=conn.truncated)
        return reply
    assert scanner.exchange(talk) == b"stream: OK\0"
    assert seen == {"sent": 200, "truncated": True}
    assert scanner.message_size(txn) == 200


# -- spamd -----------------------------------------------------------------------------------------
def spamd_check(scanner, txn):
    def talk(conn):
        conn.send(f"CHECK SPAMC/1.5\r\nContent-length: {scanner.message_size(txn)}\r\n"
                  "User: nobody\r\n\r\n".encode())
        conn.send_message(txn)
        conn.shutdown_write()
        status = conn.readline()
        assert status.startswith(b"SPAMD/1.") and b" 0 EX_OK" in status, status
        return conn.read_all()
    return scanner.exchange(talk)


@pytest.mark.parametrize("kind", ["unix", "tcp"])
def test_spamd_check_gtube(spamd, kind, tmp_path):
    scanner = Scanner(spamd[kind], timeout=60, name="spamd")
    assert b"Spam: True" in spamd_check(scanner, message(tmp_path, GTUBE + "\n"))


# -- failures: stalled, trickling, refused ------------------------------------------------------------
@pytest.mark.no_services
def test_silent_server_fails_at_the_deadline(stalled, tmp_path):
    server = stalled()
    scanner = Scanner(server.address, timeout=0.8)
    start = time.monotonic()
    with pytest.raises(ScannerError, match="no answer within 0.8s"):
        scanner.exchange(instream(message(tmp_path, "hello\n")))
    assert 0.7 <= time.monotonic() - start < 1.5
    assert server.received.startswith(b"zINSTREAM\0")


@pytest.mark.no_services
def test_one_deadline_for_the_whole_exchange(stalled):
    """A server that answers a byte every 0.1 s, never the whole answer, is cut off
    at the exchange's time-out (a time-out per read would wait for ever)."""
    server = stalled(drip=b"x", interval=0.1)
    scanner = Scanner(server.address, timeout=1)
    start = time.monotonic()
    with pytest.raises(ScannerError):
        scanner.exchange(lambda conn: (conn.send(b"zPING\0"), conn.read_until(b"\0", limit=10**6))[1])
    assert time.monotonic() - start < 1.6


@pytest.mark.no_services
def test_refused_connection_fails_at_once():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    start = time.monotonic()
    with pytest.raises(ScannerError, match="refused"):
        Scanner(f"127.0.0.1:{port}", timeout=5).exchange(lambda conn: conn.recv())
    assert time.monotonic() - start < 1


@pytest.mark.no_services
def test_missing_unix_socket(tmp_path):
    with pytest.raises(ScannerError, match="No such file"):
        Scanner(str(tmp_path / "none.sock")).exchange(lambda conn: conn.recv())


@pytest.mark.no_services
def test_failure_policy_tempfail_by_default_and_accept():
    plugin = LogPlugin()
    error = ScannerError("clamd at /x: no answer within 1s")
    assert Scanner("/x").failed(plugin, error) == (DENYSOFT, "Unable to scan the message, try again later")
    assert plugin.lines == [(LOGERROR, "error, clamd at /x: no answer within 1s")]
    plugin.lines.clear()
    assert Scanner("/x", failure="accept").failed(plugin, error) == DECLINED
    assert plugin.lines[0][0] == LOGWARN and "unscanned" in plugin.lines[0][1]


@pytest.mark.no_services
def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="failure policy"):
        Scanner("/x", failure="ignore")
    with pytest.raises(ValueError, match="timeout"):
        Scanner("/x", timeout=0)
    with pytest.raises(ValueError):
        parse_address("clamd")
    assert parse_address("unix:/run/c.sock") == (socket.AF_UNIX, "/run/c.sock")
    assert parse_address("[::1]:3310") == (socket.AF_INET6, ("::1", 3310))
    assert parse_address("127.0.0.1:783") == (socket.AF_INET, ("127.0.0.1", 783))


# -- the body API keeps data_size right --------------------------------------------------------------
def written(txn):
    return b"".join(txn.iter_message())


@pytest.mark.parametrize("threshold", [10000, 10])
@pytest.mark.no_services
def test_body_append_replace_and_header_edits_keep_data_size(tmp_path, threshold):
    txn = message(tmp_path, "line one\n", threshold=threshold)
    assert txn.data_size == len(written(txn))
    txn.body_fh().read(3)                      # a reader left the position mid-body
    txn.body_append("footer\n")
    assert txn.body_bytes().endswith(b"line one\nfooter\n")
    txn.header.add("X-Scanned", "clean", prepend=True)
    txn.header.replace("Subject", "[tag] test")
    txn.header.delete("To")
    assert txn.data_size == len(written(txn))
    assert b"X-Scanned: clean\nSubject: [tag] test\nFrom: a@b.test\n\nline one\nfooter\n" == written(txn)

    txn.body_replace(b"new body\n")
    assert txn.body_bytes() == b"new body\n" and txn.data_size == len(written(txn))
    txn.body_replace(io.BytesIO(b"z" * 50_000))
    assert txn.body_bytes() == b"z" * 50_000 and txn.data_size == len(written(txn))
    txn.body_replace("")
    assert txn.body_bytes() == b"" and txn.data_size == len(written(txn))
    assert txn.message_size(crlf=True) == len(b"".join(txn.iter_message(crlf=True)))
    txn.close()


# -- a plugin scanning in a real session ----------------------------------------------------------------
@pytest.fixture
def scan_config(make_config):
    def make(args):
        return make_config(plugins=[f"t_scan {args}", "rcpt_ok", "queue/maildir {maildir}"],
                           files={"plugin_dirs": [TEST_PLUGINS, REAL_PLUGINS],
                                  "rcpthosts": "example.test", "loglevel": "6"})
    return make


def send(srv, body):
    with srv.session() as c:
        c.cmd("HELO client.test")
        c.cmd("MAIL FROM:<a@b.test>")
        c.cmd("RCPT TO:<u@example.test>")
        c.cmd("DATA")
        c.send(f"Subject: scan me\r\n\r\n{body}\r\n.\r\n")
        code, lines = c.read_reply()
        c.cmd("QUIT")
    return (code, "\n".join(lines)), c.stderr


def test_plugin_refuses_a_virus_and_marks_a_clean_message(scan_config, clamd):
    srv = scan_config(clamd["unix"])
    (code, text), _ = send(srv, EICAR)
    assert code == 552 and text.startswith("Virus found: Local.Test.EICAR"), text
    (code, text), log = send(srv, "hello")
    assert code == 250, text
    [msg] = srv.messages()
    assert msg.endswith(b"\n\nhello\n-- scanned\n")
    # data_size before the plugin's edits: the message with the trace headers
    scanned, rest = msg.split(b"X-Scanned: clean ", 1)[1].split(b"\n", 1)
    assert int(scanned) == len(rest) - len(b"-- scanned\n")
    size = int(log.split("size now ")[1].split()[0])
    assert size == len(msg.split(b"\n", 2)[2])       # less Return-Path, Delivered-To of maildir


@pytest.mark.parametrize("policy, expect", [("tempfail", 452), ("accept", 250)])
def test_plugin_failure_policy_with_a_stalled_scanner(scan_config, stalled, policy, expect):
    server = stalled()
    srv = scan_config(f"{server.address} timeout 1 failure {policy}")
    start = time.monotonic()
    (code, text), log = send(srv, "hello")
    assert time.monotonic() - start < 3
    assert code == expect, text
    assert f"error, clamd at {server.address}: no answer within 1s" in log
