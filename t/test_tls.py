"""The tls plugin and the engine's TLS: STARTTLS, injection defence, failed
handshakes, SMTPS, protocol settings, certificate maker and reload, driven by
real clients (Python ssl, swaks, openssl s_client)."""

import os
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from harness import ConfigDir, bin_path, free_port, wait_for_port
from tools import require_tool
from stubs.spawn_server import SpawnServer
from stubs.tlsutil import HOST, client_context, install_certs, make_certs, starttls

from qpsmtpd_py.tls import parse_protocols

PLUGINS = ["tls", "rcpt_ok", "queue/maildir {maildir}"]


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(str(tmp_path_factory.mktemp("certs")))


@pytest.fixture
def srv(tmp_path, certs):
    cfg = ConfigDir(tmp_path, plugins=PLUGINS, files={"rcpthosts": "example.test"})
    install_certs(certs, cfg)
    return cfg


def test_starttls_upgrade_and_fresh_session(srv, certs):
    with srv.session() as c:
        assert "STARTTLS" in c.ehlo()
        assert c.cmd("MAIL FROM:<a@b.test>")[0] == 250
        # inside a mail transaction: refused as Postfix does; RSET ends it
        assert c.cmd("STARTTLS") == (503, "5.5.1 Error: MAIL transaction in progress")
        assert c.cmd("RSET")[0] == 250
        assert "Go ahead with TLS" in starttls(c, certs)
        assert c.sock.version() in ("TLSv1.2", "TLSv1.3")
        # RFC 3207: everything is forgotten; EHLO again, STARTTLS not offered any more
        assert c.cmd("MAIL FROM:<a@b.test>")[0] == 503
        assert "STARTTLS" not in c.ehlo()
        assert c.cmd("STARTTLS")[0] == 500
        code, _ = c.send_message("a@b.test", ["u@example.test"], "Subject: t\n\nbody", ehlo=False)
        assert code == 250
        assert c.cmd("QUIT")[0] == 221
    (msg,) = srv.messages()
    received = msg.split(b"Received: ", 1)[1].split(b"\n\n")[0]
    assert b"ESMTPS" in received and b" encrypted)" in received and b"TLSv1." in received


def test_starttls_replies_like_qpsmtpd(srv):
    with srv.session() as c:
        assert c.cmd("STARTTLS") == (500, "Unrecognized command")        # before EHLO
        c.ehlo()
        assert c.cmd("STARTTLS foo") == (500, "5.5.1 Syntax error (no parameters allowed)")
    with srv.session() as c:
        assert c.cmd("HELO client.test")[0] == 250
        assert c.cmd("STARTTLS")[0] == 500


def test_pipelined_commands_after_starttls_are_discarded(srv, certs):
    """CVE-2011-0411 / CVE-2024-34083: nothing sent with STARTTLS is executed."""
    srv.write("loglevel", "7")
    with srv.session() as c:
        c.ehlo()
        c.send("STARTTLS\r\nRSET\r\nHELP\r\n")
        assert c.read_reply()[0] == 220
        c.sock.settimeout(0.5)
        with pytest.raises(socket.timeout):
            c.sock.recv(100)                     # no plaintext answer to RSET or HELP
        c.sock.settimeout(20)
        c.sock = client_context(certs).wrap_socket(c.sock, server_hostname=HOST)
        assert c.cmd("NOOP") == (250, "OK")      # the first TLS reply is for NOOP
        assert c.cmd("EHLO again.test")[0] == 250
        c.cmd("QUIT")
    log = c.stderr
    assert "dispatching STARTTLS" in log
    assert "dispatching RSET" not in log and "dispatching HELP" not in log
    assert "discarded 12 octets" in log


def test_failed_handshake_refuses_mail_commands(srv):
    with srv.session() as c:
        c.ehlo()
        assert c.cmd("STARTTLS")[0] == 220
        c.send(b"\x15\x03\x03\x00\x02\x02\x28")   # a fatal TLS alert instead of a ClientHello
        data = b""
        while b"TLS Negotiation Failed\r\n" not in data:
            chunk = c.sock.recv(4096)
            assert chunk, data
            data += chunk
        assert b"500 5.5.1 TLS Negotiation Failed" in data
        for command in ("EHLO again.test", "HELO again.test", "MAIL FROM:<a@b.test>",
                        "RCPT TO:<u@example.test>", "DATA"):
            code, text = c.cmd(command)
            assert code == 550 and text.endswith("Command refused due to lack of security")
        assert c.cmd("QUIT")[0] == 221
    assert "TLS negotiation failed" in c.stderr


@pytest.mark.filterwarnings("ignore::DeprecationWarning")      # the client's TLSv1/TLSv1_1
def test_tls_1_1_refused_by_default_and_tls_protocols(srv, certs):
    with srv.session() as c:
        c.ehlo()
        with pytest.raises(ssl.SSLError):
            starttls(c, certs, minimum_version=ssl.TLSVersion.TLSv1,
                     maximum_version=ssl.TLSVersion.TLSv1_1)
    srv.write("tls_protocols", "TLSv1_3")
    with srv.session() as c:
        c.ehlo()
        with pytest.raises(ssl.SSLError):
            starttls(c, certs, maximum_version=ssl.TLSVersion.TLSv1_2)
    with srv.session() as c:
        c.ehlo()
        starttls(c, certs)
        assert c.sock.version() == "TLSv1.3"


@pytest.mark.no_services
def test_parse_protocols():
    v = ssl.TLSVersion
    assert parse_protocols(None) == (v.TLSv1_2, v.TLSv1_3)
    assert parse_protocols("SSLv23:!SSLv2:!SSLv3") == (v.TLSv1_2, v.TLSv1_3)
    assert parse_protocols("TLSv1_2") == (v.TLSv1_2, v.TLSv1_2)
    assert parse_protocols("!TLSv1_3") == (v.TLSv1_2, v.TLSv1_2)
    assert parse_protocols("TLSv1_1:TLSv1_2") == (v.TLSv1_1, v.TLSv1_2)     # only when named
    for bad in ("SSLv3", "TLSv9", "!TLSv1_2:!TLSv1_3"):
        with pytest.raises(ValueError):
            parse_protocols(bad)


def test_bad_settings_stop_startup(srv, tmp_path):
    srv.write("tls_ciphers", "NO-SUCH-CIPHER")
    with srv.session(read_greeting=False) as c:
        assert c.closed()
    assert "tls_ciphers" in c.stderr and c.proc.returncode == 78
    srv.write("tls_ciphers", "ECDHE+AESGCM")
    srv.set_plugins(["tls /nonexistent/cert.pem", "rcpt_ok"])
    with srv.session(read_greeting=False) as c:
        assert c.closed()
    assert "/nonexistent/cert.pem not found" in c.stderr


def test_without_certificates_starttls_is_not_offered(tmp_path):
    cfg = ConfigDir(tmp_path, plugins=PLUGINS)
    with cfg.session() as c:
        assert "STARTTLS" not in c.ehlo()
        assert c.cmd("STARTTLS")[0] == 500
    assert "Cannot locate cert/key" in c.stderr


def test_smtps_implicit_tls(srv, certs):
    with srv.session(args=["--smtps"], read_greeting=False) as c:
        c.sock = client_context(certs).wrap_socket(c.sock, server_hostname=HOST)
        assert c.read_reply()[0] == 220
        assert "STARTTLS" not in c.ehlo()
        code, _ = c.send_message("a@b.test", ["u@example.test"], "Subject: s\n\nx", ehlo=False)
        assert code == 250
        c.cmd("QUIT")
    (msg,) = srv.messages()
    assert b"ESMTPS" in msg.split(b"\n\n")[0]


def test_port_465_is_implicit_tls_as_in_qpsmtpd(srv, certs):
    with srv.session(env={"TCPLOCALPORT": "465"}, read_greeting=False) as c:
        c.sock = client_context(certs).wrap_socket(c.sock, server_hostname=HOST)
        assert c.read_reply()[0] == 220
        assert "STARTTLS" not in c.ehlo()
        c.cmd("QUIT")


def test_smtps_handshake_failure_disconnects(srv):
    with srv.session(args=["--smtps"], read_greeting=False) as c:
        c.send("EHLO plaintext.test\r\n")
        data = b""
        try:
            while chunk := c.sock.recv(4096):
                data += chunk
        except ConnectionResetError:
            pass
        assert b"220" not in data
    assert "TLS handshake failed on SMTPS listener" in c.stderr


@pytest.mark.no_services
def test_reload_rereads_certificates(tmp_path):
    from qpsmtpd_py.app import Qpsmtpd
    from qpsmtpd_py.config import Config
    cfg = ConfigDir(tmp_path, plugins=["tls", "rcpt_ok"])
    ssl_dir = os.path.join(cfg.dir, "ssl")
    make_certs(ssl_dir)
    app = Qpsmtpd(Config([cfg.dir])).load()
    first = app.tls.context.get_ca_certs()[0]["serialNumber"]
    shutil.rmtree(ssl_dir)
    make_certs(ssl_dir)
    app.reload()
    assert app.tls.context.get_ca_certs()[0]["serialNumber"] != first


def _served_serial(port, certs):
    with socket.create_connection(("127.0.0.1", port), timeout=20) as raw:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        with context.wrap_socket(raw) as tls:
            cert = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
            assert tls.recv(100).startswith(b"220 ")
    return cert.serial_number


def test_forkserver_smtps_port_and_certificates_reloaded_on_hup(srv, certs):
    forkserver = bin_path("qpsmtpd-forkserver")
    port, smtps_port = free_port(), free_port()
    proc = subprocess.Popen([forkserver, "-l", "127.0.0.1", "-p", str(port), "--smtps-port",
                             str(smtps_port), "--allow-root", "-H", "--config", srv.dir],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=srv.tmp)
    try:
        assert wait_for_port("127.0.0.1", smtps_port), proc.stderr.read1().decode()
        first = _served_serial(smtps_port, certs)
        run = subprocess.run(["swaks", "--server", f"127.0.0.1:{port}", "--tls", "--from", "a@b.test",
                              "--to", "u@example.test", "--helo", "client.test"],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stdout
        ssl_dir = os.path.join(srv.dir, "ssl")
        shutil.rmtree(ssl_dir)
        make_certs(ssl_dir)
        proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while _served_serial(smtps_port, certs) == first:
            assert time.time() < deadline, "the new certificate was not loaded after HUP"
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=40)
        proc.stderr.close()
    assert len(srv.messages()) == 1


@pytest.mark.no_services
def test_certificate_maker(tmp_path):
    out = str(tmp_path / "ssl")
    tool = bin_path("qpsmtpd-tls-cert")
    run = subprocess.run([tool, "--dir", out, "--host", "smtp.example.test", "--san", "192.0.2.1",
                          "--key-type", "ec"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    for name in ("qpsmtpd-ca.key", "qpsmtpd-server.key"):
        assert stat.S_IMODE(os.stat(os.path.join(out, name)).st_mode) == 0o600
    with open(os.path.join(out, "qpsmtpd-server.crt"), "rb") as fh:
        cert = x509.load_pem_x509_certificate(fh.read())
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["smtp.example.test"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["192.0.2.1"]
    verify = subprocess.run(["openssl", "verify", "-CAfile", os.path.join(out, "qpsmtpd-ca.crt"),
                             "-verify_hostname", "smtp.example.test",
                             os.path.join(out, "qpsmtpd-server.crt")], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    again = subprocess.run([tool, "--dir", out], capture_output=True, text=True)
    assert again.returncode == 1 and "--force" in again.stderr
    forced = subprocess.run([tool, "--dir", out, "--host", "h.test", "--force"], capture_output=True)
    assert forced.returncode == 0
    with open(os.path.join(out, "qpsmtpd-server.crt"), "rb") as fh:
        key = x509.load_pem_x509_certificate(fh.read()).public_key()
    assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 2048


def test_openssl_s_client_verifies_the_certificate(srv, certs):
    require_tool("openssl")
    with SpawnServer(srv) as server:
        run = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{server.port}", "-starttls", "smtp",
             "-CAfile", os.path.join(certs, "qpsmtpd-ca.crt"), "-verify_hostname", HOST,
             "-verify_return_error", "-brief"],
            input="QUIT\r\n", capture_output=True, text=True, timeout=30)
        assert run.returncode == 0, run.stderr
        assert "Verification: OK" in run.stderr
        old = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{server.port}", "-starttls", "smtp",
             "-tls1_1", "-brief"], input="QUIT\r\n", capture_output=True, text=True, timeout=30)
        assert old.returncode != 0


def test_swaks_starttls_and_tls_on_connect(srv):
    require_tool("swaks")
    with SpawnServer(srv) as plain, SpawnServer(srv, args=["--smtps"]) as smtps:
        for port, option in ((plain.port, "--tls"), (smtps.port, "--tls-on-connect")):
            run = subprocess.run(
                ["swaks", "--server", f"127.0.0.1:{port}", option, "--from", "a@b.test",
                 "--to", "u@example.test", "--helo", "client.test", "--body", "tls body"],
                capture_output=True, text=True, timeout=60)
            assert run.returncode == 0, run.stdout + run.stderr
            assert "TLS started" in run.stdout
    messages = srv.messages()
    assert len(messages) == 2 and all(b"ESMTPS" in m for m in messages)
