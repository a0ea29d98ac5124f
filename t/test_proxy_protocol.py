"""PROXY protocol v1/v2 listeners (--proxy-protocol, --proxy-from): HAProxy in front
of the prefork and forkserver servers, and hand-made headers for the refusals.

The client connects from 127.0.0.5 (its PTR: dynamic-127-0-0-5.pool.example.test), the
proxy from 127.0.0.1: the Received line must name 127.0.0.5."""

import os
import socket
import struct
import subprocess

import pytest

import harness
from serverproc import Server, wait_until
from tools import require_tool, sbin

CLIENT_IP = "127.0.0.5"
LOG = {"loglevel": "6"}


@pytest.fixture
def haproxy(tmp_path):
    """start(server_port) -> {"v1": port, "v2": port} of an HAProxy in front of it."""
    require_tool("haproxy")
    procs = []

    def start(server_port):
        ports = {"v1": harness.free_port(), "v2": harness.free_port()}
        cfg = tmp_path / "haproxy.cfg"
        cfg.write_text(f"""global
    maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend v1
    bind 127.0.0.1:{ports['v1']}
    default_backend smtp_v1
backend smtp_v1
    server s1 127.0.0.1:{server_port} send-proxy
frontend v2
    bind 127.0.0.1:{ports['v2']}
    default_backend smtp_v2
backend smtp_v2
    server s2 127.0.0.1:{server_port} send-proxy-v2
""")
        log = open(tmp_path / "haproxy.log", "wb")
        proc = subprocess.Popen([sbin("haproxy"), "-f", str(cfg), "-db"], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT)
        procs.append(proc)
        for port in ports.values():
            assert harness.wait_for_port("127.0.0.1", port), (tmp_path / "haproxy.log").read_text()
        return ports
    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)


def client_from(ip, port, read_greeting=True):
    sock = socket.create_connection(("127.0.0.1", port), timeout=20, source_address=(ip, 0))
    client = harness.Client(sock, None, 20)
    if read_greeting:
        client.read_reply()
    return client


def delivered(srv, marker):
    return next(m.decode() for m in srv.messages() if marker.encode() in m)


def deliver(c, marker):
    code, text = c.send_message("a@b.test", ["u@example.test"], f"Subject: {marker}\n\nhi\n")
    c.cmd("QUIT")
    c.close()
    return code, text


@pytest.mark.parametrize("program", ["qpsmtpd-prefork", "qpsmtpd-forkserver"])
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_haproxy_in_front_received_names_the_real_client(mail_config, haproxy, program, version):
    srv = mail_config(files=LOG)
    port = harness.free_port()
    with Server(program, srv, "--proxy-protocol", str(port), port=port) as server:
        front = haproxy(port)[version]
        c = client_from(CLIENT_IP, front)
        assert c.code == 220, c.text
        marker = f"proxy-{version}-{program}"
        code, text = deliver(c, marker)
        assert code == 250, text
        msg = delivered(srv, marker)
        assert ("Received: from dynamic-127-0-0-5.pool.example.test (HELO client.example.test)"
                " (127.0.0.5)\n by mx.example.test") in msg, msg
        assert "127.0.0.1" not in msg.split("\n\n")[0]
        log = server.log
    assert "dropped a connection" not in log


def proxied_server(mail_config, *args, second_port=None):
    srv = mail_config(files=LOG)
    port = harness.free_port()
    extra = ["--listen-address", f"127.0.0.1:{second_port}"] if second_port else []
    return srv, Server("qpsmtpd-prefork", srv, "--proxy-protocol", str(port), *extra, *args,
                       port=port)


def test_untrusted_proxy_is_dropped(mail_config):
    srv, server = proxied_server(mail_config, "--proxy-from", "127.0.0.9,10.0.0.0/8")
    with server:
        c = client_from("127.0.0.1", server.port, read_greeting=False)
        c.send("PROXY TCP4 192.0.2.77 127.0.0.1 4000 25\r\n")
        assert c.closed()
        assert c.buf == b""                              # not even a greeting
        wait_until(lambda: "127.0.0.1 is not a trusted proxy" in server.log, what="log line")


def test_missing_or_broken_header_is_dropped(mail_config):
    srv, server = proxied_server(mail_config)
    with server:
        for opening in (b"EHLO client.example.test\r\n", b"PROXY TCP4 300.1.1.1 127.0.0.1 1 25\r\n",
                        b"PROXY TCP4 192.0.2.1 127.0.0.1 99999 25\r\n",
                        b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x02ab"):
            c = client_from("127.0.0.1", server.port, read_greeting=False)
            c.send(opening)
            assert c.closed(), opening
            assert c.buf == b"", opening
        wait_until(lambda: server.log.count("proxy: dropped a connection") == 4, what="4 drops")
        assert "no PROXY header (the connection began with b'E')" in server.log


def test_hand_made_headers(mail_config):
    """v1 TCP6, v2 TCP4 with a TLV after the addresses, v2 LOCAL (a health check:
    the proxy's own address stays), v1 UNKNOWN."""
    srv, server = proxied_server(mail_config)
    v2 = b"\r\n\r\n\x00\r\nQUIT\n"
    tlv = b"\x04\x00\x02ok"                              # PP2_TYPE_NOOP
    cases = [
        ("v1-tcp6", b"PROXY TCP6 2001:db8::7 ::1 4000 25\r\n", "(2001:db8::7)"),
        ("v2-tcp4", v2 + b"\x21\x11" + struct.pack("!H", 12 + len(tlv))
         + socket.inet_aton("198.51.100.7") + socket.inet_aton("127.0.0.1")
         + struct.pack("!HH", 4000, 25) + tlv, "(198.51.100.7)"),
        ("v2-local", v2 + b"\x20\x00\x00\x00", "(127.0.0.1)"),
        ("v1-unknown", b"PROXY UNKNOWN\r\n", "(127.0.0.1)"),
    ]
    with server:
        for marker, header, seen in cases:
            c = client_from("127.0.0.1", server.port, read_greeting=False)
            c.send(header)
            c.read_reply()
            assert c.code == 220, (marker, c.text)
            assert deliver(c, marker)[0] == 250
            received = delivered(srv, marker).split("\n by ")[0]
            assert received.endswith(seen), (marker, received)


def test_other_listeners_do_not_take_the_header(mail_config):
    plain = harness.free_port()
    srv, server = proxied_server(mail_config, second_port=plain)
    with server:
        c = client_from("127.0.0.1", plain)
        assert c.code == 220
        assert c.cmd("PROXY TCP4 192.0.2.77 127.0.0.1 4000 25")[0] == 500   # just a command
        c.close()


def test_proxy_port_without_listener_stops_startup(mail_config):
    srv = mail_config(files=LOG)
    server = Server("qpsmtpd-prefork", srv, "--proxy-protocol", "1", wait=False)
    try:
        assert server.wait_exit() == 64
        assert "--proxy-protocol 1: no listener on port 1" in server.log
    finally:
        server.stop()
