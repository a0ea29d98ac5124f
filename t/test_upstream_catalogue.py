"""Upstream plugins missing from the catalogue until issue 13: loadcheck, stunnel,
ident/p0f (against a stand-in p0f speaking p0f 3's documented API), user_config,
logging/connection_id, logging/transaction_id, auth/auth_vpopmail."""

import base64
import hashlib
import hmac
import os
import re
import socket
import struct
import threading
import warnings

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import crypt            # deprecated in 3.11, removed in 3.13
    except ImportError:
        import crypt_r as crypt  # PyPI crypt-r: the same module

from inproc import message_wire

LOCAL = {"rcpthosts": "example.test", "loglevel": "6"}
MESSAGE = message_wire("Subject: t\n\nhello")


def mail(*rcpts):
    return ("EHLO client.test", "MAIL FROM:<a@b.test>", *[f"RCPT TO:<{r}>" for r in rcpts],
            "DATA", MESSAGE, "QUIT")


# ---------------------------------------------------------------------------- loadcheck
def test_loadcheck_refuses_above_max_load_and_caches(session_server, clock, tmp_path):
    loadavg = tmp_path / "loadavg"
    loadavg.write_text("7.50 3.00 1.00 2/300 12345\n")
    server = session_server(f"loadcheck max_load 7 cache_time 30 loadavg {loadavg}", files=LOCAL)
    d = server.talk("EHLO client.test", "QUIT")
    assert d.pairs[0] == (450, "Server load too high, please try again later.")
    assert "local load too high: 7.5" in d.log
    loadavg.write_text("0.50 3.00 1.00 2/300 12345\n")
    assert server.talk("QUIT").codes[0] == 450              # the cached reading
    clock.advance(30)
    assert server.talk("QUIT").codes[0] == 220


def test_loadcheck_uptime_fallback_and_unreadable_load(session_server, tmp_path):
    uptime = tmp_path / "uptime"
    uptime.write_text("#!/bin/sh\necho ' 12:30am  up 5 days, 12:43,  1 user,  load average: 9.25, 1.00, 0.50'\n")
    uptime.chmod(0o755)
    server = session_server(f"loadcheck uptime {uptime} loadavg {tmp_path}/none", files=LOCAL)
    assert server.talk("QUIT").codes[0] == 450
    server = session_server(f"loadcheck uptime {tmp_path}/none loadavg {tmp_path}/none", files=LOCAL)
    d = server.talk("QUIT")
    assert d.codes[0] == 220 and "cannot run" in d.log      # no reading: mail flows


# ---------------------------------------------------------------------------- stunnel
def test_stunnel_proxy_line_sets_the_client(session_server):
    server = session_server("stunnel proxy on", files=LOCAL)
    d = server.talk("PROXY TCP4 127.0.0.5 127.0.0.1 40123 465", *mail("u@example.test"),
                    remote_ip="127.0.0.1")
    assert d.codes == [220, 250, 250, 250, 354, 250, 221]   # no reply to PROXY
    assert d.connection.notes["proxy"] == "YES" and d.connection.notes["local_port"] == 465
    assert d.connection.remote_ip == "127.0.0.5" and d.connection.remote_port == 40123
    header = d.messages[0]["header"]
    # a fresh PTR lookup for the real client (the test DNS server knows 127.0.0.5)
    assert header.startswith("Received: from dynamic-127-0-0-5.pool.example.test (HELO client.test)"
                             " (127.0.0.5)")


@pytest.mark.parametrize("line, ip", [
    ("PROXY TCP4 127.0.0.5 127.0.0.1 40123 465", "192.0.2.10"),     # untrusted sender
    ("PROXY TCP4 127.0.0.5 127.0.0.1 40123", "127.0.0.1"),           # malformed
    ("PROXY TCP6 127.0.0.5 127.0.0.1 40123 465", "127.0.0.1"),       # wrong family
])
def test_stunnel_refusals_disconnect(session_server, line, ip):
    server = session_server("stunnel proxy on", files=LOCAL)
    d = server.talk(line, "EHLO client.test", remote_ip=ip)
    assert d.codes[1] == 521 and len(d.replies) == 2, d.replies


def test_stunnel_off_and_second_proxy(session_server):
    d = session_server("stunnel", files=LOCAL).talk("PROXY TCP4 127.0.0.5 127.0.0.1 1 2",
                                                   remote_ip="127.0.0.1")
    assert d.codes[1] == 500                          # proxy off: an unknown command
    line = "PROXY TCP4 127.0.0.5 127.0.0.1 1 2"
    d = session_server("stunnel proxy on", files=LOCAL).talk(line, line, remote_ip="127.0.0.1")
    assert d.codes[1] == 521


# ---------------------------------------------------------------------------- ident/p0f
class StandInP0f:
    """A unix socket answering p0f 3's API: 21-byte query in, 232-byte answer out."""

    def __init__(self, path, table):
        self.path, self.table, self.queries = path, table, []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(5)
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                query = conn.recv(21)
                magic, kind = struct.unpack("=IB", query[:5])
                ip = socket.inet_ntop(socket.AF_INET if kind == 4 else socket.AF_INET6,
                                      query[5:9] if kind == 4 else query[5:21])
                self.queries.append(ip)
                if magic != 0x50304601:
                    conn.sendall(struct.pack("=II", 0x50304602, 0x00))
                    continue
                found = self.table.get(ip)
                if found is None:
                    conn.sendall(struct.pack("=II", 0x50304602, 0x20).ljust(232, b"\0"))
                    continue
                os_name, flavor, link, distance, uptime_min = found
                conn.sendall(struct.pack("=IIIIIIIIIhBB32s32s32s32s32s32s", 0x50304602, 0x10,
                                         1, 2, 3, uptime_min, 4, 0, 0, distance, 0, 0,
                                         os_name.encode(), flavor.encode(), b"", b"",
                                         link.encode(), b""))

    def close(self):
        self.sock.close()


@pytest.fixture
def p0f(tmp_path):
    stand_in = StandInP0f(str(tmp_path / "p0f.sock"), {
        "192.0.2.10": ("Windows", "7 or 8", "Ethernet or modem", 11, 3000),
        "198.51.100.1": ("Linux", "3.11 and newer", "DSL", 5, 60)})
    yield stand_in
    stand_in.close()


def test_p0f_note_headers_and_smite(session_server, p0f):
    server = session_server(f"ident/p0f {p0f.path} smite_os 1",
                            files={**LOCAL, "p0f_blocked_operating_systems": "^windows 7\n[bad"})
    d = server.talk(*mail("u@example.test"))
    note = d.connection.notes["p0f"]
    assert (note["os_name"], note["os_flavor"], note["distance"]) == ("Windows", "7 or 8", 11)
    assert (note["genre"], note["link"], note["uptime"]) == ("Windows", "Ethernet or modem", 50)
    assert d.pairs[3] == (550, "5.7.1 OS Blocked")
    d = server.talk(*mail("u@example.test"), remote_ip="198.51.100.1")
    assert d.codes[3] == 250
    assert "X-P0F-Genre: Linux\nX-P0F-Detail: 3.11 and newer\nX-P0F-Distance: 5\n" \
           "X-P0F-Link: DSL\nX-P0F-Uptime: 1" in d.messages[0]["header"]
    d = server.talk(*mail("u@example.test"), remote_ip="203.0.113.9")
    assert "p0f" not in d.connection.notes and "p0f: no match" in d.log
    assert p0f.queries == ["192.0.2.10", "198.51.100.1", "203.0.113.9"]


def test_p0f_down_or_loopback_lets_mail_through(session_server, p0f, tmp_path):
    server = session_server(f"ident/p0f {tmp_path}/nowhere.sock", files=LOCAL)
    d = server.talk(*mail("u@example.test"))
    assert d.codes[-2] == 250 and "p0f: [Errno 2]" in d.log
    server = session_server(f"ident/p0f {p0f.path}", files=LOCAL)
    server.talk(*mail("u@example.test"), remote_ip="127.0.0.1")
    assert p0f.queries == []                             # loopback is never asked


# ---------------------------------------------------------------------------- user_config
def test_user_config_answers_from_the_users_directory(session_server, tmp_path):
    base = tmp_path / "users"
    (base / "example.test" / "alice").mkdir(parents=True)
    (base / "example.test" / "alice" / "t_reject_me").write_text("# mine\n\nno mail for alice\n")
    server = session_server(f"user_config {base}/%h/%u", "t_ask_user_config", files=LOCAL)
    d = server.talk("EHLO c.test", "MAIL FROM:<a@b.test>", "RCPT TO:<alice@example.test>",
                    "RCPT TO:<bob@example.test>", "RCPT TO:<\"../alice\"@example.test>", "QUIT")
    assert d.pairs[3] == (550, "5.7.1 no mail for alice")
    assert d.codes[4] == 250 and d.codes[5] == 250        # no file; unsafe name


# ---------------------------------------------------------------------------- logging ids
def test_connection_and_transaction_ids(make_config):
    srv = make_config(["rcpt_ok", "queue/maildir {maildir}"],
                      files={**LOCAL, "logging": "logging/transaction_id LOGINFO"})
    with srv.session() as c:
        for n in range(2):
            assert c.send_message("a@b.test", ["u@example.test"], f"Subject: {n}\n\nx",
                                  ehlo=n == 0)[0] == 250
    lines = [l for l in c.stderr.splitlines() if "recipient <u@example.test> accepted" in l]
    ids = [l.split(" ", 1)[0] for l in lines]
    assert len(ids) == 2 and ids[0].endswith(".1") and ids[1].endswith(".2"), lines
    base = ids[0][:-2]
    assert ids[1] == base + ".2" and re.fullmatch(r"[0-9a-f]{8,}-\d+-\d+", base), base
    srv = make_config(["rcpt_ok", "queue/maildir {maildir}"],
                      files={**LOCAL, "logging": "logging/connection_id LOGINFO"})
    with srv.session() as c:
        assert c.send_message("a@b.test", ["u@example.test"], "Subject: x\n\nx")[0] == 250
    lines = c.stderr.splitlines()
    assert lines and len({l.split(" ", 1)[0] for l in lines if "(rcpt)" in l or "(mail)" in l}) == 1
    assert any(" LOGINFO: (rcpt) " in l for l in lines), lines


# ---------------------------------------------------------------------------- auth_vpopmail
def b64(text):
    return base64.b64encode(text.encode()).decode()


@pytest.fixture
def vpopmail(tmp_path):
    home = tmp_path / "vpopmail"
    domain = home / "domains" / "example.test"
    domain.mkdir(parents=True)
    (home / "users").mkdir()
    (home / "users" / "assign").write_text(
        f"+example.test-:example.test:89:89:{domain}:-::\n"
        f"+alias.test-:example.test:89:89:{domain}:-::\n.\n")
    alice = crypt.crypt("alicepw", crypt.mksalt(crypt.METHOD_SHA512))
    bob = crypt.crypt("bobpw", crypt.mksalt(crypt.METHOD_MD5))
    (domain / "vpasswd").write_text(
        f"alice:{alice}:1:0:Alice:{domain}/alice:NOQUOTA:alicepw\n"
        f"bob:{bob}:1:0:Bob:{domain}/bob:NOQUOTA:\n")
    return home


def test_auth_vpopmail(session_server, vpopmail):
    files = {**LOCAL, "auth_allow_plaintext": "1"}
    server = session_server(f"auth/auth_vpopmail vpopmail_dir {vpopmail}", files=files)
    codes = lambda *script: server.talk("EHLO c.test", *script).codes[2:]
    assert codes("AUTH PLAIN " + b64("\0alice@example.test\0alicepw")) == [235]
    assert codes("AUTH PLAIN " + b64("\0bob@alias.test\0bobpw")) == [235]      # alias domain
    assert codes("AUTH PLAIN " + b64("\0bob@example.test\0wrong")) == [535]
    assert codes("AUTH PLAIN " + b64("\0carol@example.test\0x")) == [535]      # nobody knows her
    os.chmod(vpopmail / "users" / "assign", 0)
    os.rename(vpopmail / "users" / "assign", vpopmail / "users" / "assign.gone")
    os.mkdir(vpopmail / "users" / "assign")                 # unreadable as a file: 454
    assert codes("AUTH PLAIN " + b64("\0alice@example.test\0alicepw")) == [454]


def test_auth_vpopmail_cram_md5_with_clear_passwords(make_config, vpopmail):
    srv = make_config(["auth/auth_vpopmail vpopmail_dir " + str(vpopmail), "rcpt_ok"],
                      files={**LOCAL, "auth_allow_plaintext": "1"})
    with srv.session() as c:
        c.ehlo()
        code, challenge = c.cmd("AUTH CRAM-MD5")
        assert code == 334
        digest = hmac.new(b"alicepw", base64.b64decode(challenge), hashlib.md5).hexdigest()
        assert c.cmd(b64(f"alice@example.test {digest}"))[0] == 235
