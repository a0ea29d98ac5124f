"""SMTP AUTH in the core (PLAIN, LOGIN, CRAM-MD5) with auth/auth_flat_file and
auth/authdeny: offering rules, exchanges, failures, relaying, headers, logging,
and real clients (swaks, smtplib) over TLS."""

import base64
import hashlib
import hmac
import re
import smtplib
import subprocess

import pytest

from harness import ConfigDir
from tools import require_tool
from stubs.spawn_server import SpawnServer
from stubs.tlsutil import client_context, install_certs, make_certs, starttls

ALICE, ALICE_PW = "alice@example.test", "Secret pw:with:colons"
BOB, BOB_PW = "bob@example.test", "bobpw"
USERS = [f"{ALICE}:{ALICE_PW}", f"{BOB}:{BOB_PW}"]
PLUGINS = ["auth/auth_flat_file", "rcpt_ok", "queue/maildir {maildir}"]


def b64(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


def plain(user, password, authz=""):
    return b64(f"{authz}\0{user}\0{password}")


def cram_answer(challenge, user, password):
    ticket = base64.b64decode(challenge)
    return b64(f"{user} " + hmac.new(password.encode(), ticket, hashlib.md5).hexdigest())


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(str(tmp_path_factory.mktemp("certs")))


@pytest.fixture
def srv(tmp_path):
    """Plaintext AUTH allowed, so the exchanges can be tested without TLS."""
    return ConfigDir(tmp_path, plugins=PLUGINS, files={
        "rcpthosts": "example.test", "flat_auth_pw": USERS, "auth_allow_plaintext": "1"})


@pytest.fixture
def tls_srv(tmp_path, certs):
    cfg = ConfigDir(tmp_path, plugins=["tls"] + PLUGINS,
                    files={"rcpthosts": "example.test", "flat_auth_pw": USERS})
    install_certs(certs, cfg)
    return cfg


def ok(mech, user):
    """The 235 text for a successful login through auth_flat_file."""
    return 235, f"2.7.0 {mech} authentication successful for {user} - auth_flat_file"


def failed(mech, user):
    return 535, f"5.7.8 {mech} authentication failed for {user} from 192.0.2.10"


def auth_line(ehlo_lines):
    return next((line for line in ehlo_lines if line.startswith("AUTH ")), None)


# -- where AUTH is offered ----------------------------------------------------------------
def test_auth_needs_tls_by_default(tls_srv, certs):
    with tls_srv.session() as c:
        assert auth_line(c.ehlo()) is None
        assert c.cmd("AUTH PLAIN " + plain(ALICE, ALICE_PW)) == (500, "5.5.1 Unrecognized command")
        starttls(c, certs)
        assert auth_line(c.ehlo()) == "AUTH PLAIN LOGIN CRAM-MD5"
        assert c.cmd("AUTH PLAIN " + plain(ALICE, ALICE_PW)) == ok("PLAIN", ALICE)


def test_auth_allow_plaintext_and_tls_before_auth(tls_srv, certs):
    tls_srv.write("auth_allow_plaintext", "1")
    with tls_srv.session() as c:
        assert auth_line(c.ehlo()) == "AUTH PLAIN LOGIN CRAM-MD5"
    tls_srv.write("tls_before_auth", "1")          # qpsmtpd: no AUTH while STARTTLS is offered
    with tls_srv.session() as c:
        lines = c.ehlo()
        assert "STARTTLS" in lines and auth_line(lines) is None
        starttls(c, certs)
        assert auth_line(c.ehlo()) is not None


def test_auth_needs_ehlo(srv):
    with srv.session() as c:
        assert c.cmd("AUTH PLAIN " + plain(ALICE, ALICE_PW)) == (500, "Unrecognized command")
        assert c.cmd("HELO client.test")[0] == 250
        assert c.cmd("AUTH PLAIN " + plain(ALICE, ALICE_PW)) == (500, "Unrecognized command")


def test_only_mechanisms_with_hooks_are_offered(tmp_path):
    cfg = ConfigDir(tmp_path, plugins=["auth/auth_checkpassword checkpw /bin/false true /bin/true",
                                       "rcpt_ok"], files={"auth_allow_plaintext": "1"})
    with cfg.session() as c:
        assert auth_line(c.ehlo()) == "AUTH PLAIN LOGIN"
        assert c.cmd("AUTH CRAM-MD5") == (504, "5.5.4 Unimplemented authentication mechanism: CRAM-MD5")
    cfg = ConfigDir(tmp_path, plugins=["rcpt_ok"], files={"auth_allow_plaintext": "1"})
    with cfg.session() as c:
        assert auth_line(c.ehlo()) is None


# -- the exchanges ----------------------------------------------------------------------------
def test_plain_initial_response_and_continuation(srv):
    with srv.session() as c:
        c.ehlo()
        assert c.cmd("AUTH PLAIN " + plain(ALICE, ALICE_PW, authz=ALICE))[0] == 235
        assert c.cmd("AUTH PLAIN " + plain(ALICE, ALICE_PW)) == (503, "5.5.1 but you already said AUTH ...")
    with srv.session() as c:
        c.ehlo()
        c.send("AUTH PLAIN\r\n")
        c.read_reply()
        assert c.raw == [b"334 \r\n"]
        assert c.cmd(plain(BOB, BOB_PW)) == ok("PLAIN", BOB)


def test_login(srv):
    with srv.session() as c:
        c.ehlo()
        assert c.cmd("AUTH LOGIN") == (334, "VXNlcm5hbWU6")
        assert c.cmd(b64(ALICE)) == (334, "UGFzc3dvcmQ6")
        assert c.cmd(b64(ALICE_PW)) == ok("LOGIN", ALICE)
    with srv.session() as c:                       # the user name as initial response
        c.ehlo()
        assert c.cmd("AUTH LOGIN " + b64(BOB)) == (334, "UGFzc3dvcmQ6")
        assert c.cmd(b64(BOB_PW))[0] == 235


def test_cram_md5(srv):
    with srv.session() as c:
        c.ehlo()
        code, challenge = c.cmd("AUTH CRAM-MD5")
        assert code == 334
        assert re.fullmatch(r"<[0-9a-f]+\.[0-9a-f]+@mx\.example\.test>", base64.b64decode(challenge).decode())
        assert c.cmd(cram_answer(challenge, ALICE, ALICE_PW)) == ok("CRAM-MD5", ALICE)
    with srv.session() as c:
        c.ehlo()
        code, challenge = c.cmd("AUTH CRAM-MD5")
        first = challenge
        assert c.cmd(cram_answer(challenge, ALICE, "wrong")) == failed("CRAM-MD5", ALICE)
        code, challenge = c.cmd("AUTH CRAM-MD5")
        assert challenge != first                  # a new ticket every time


def test_wrong_password_and_unknown_user(srv):
    with srv.session() as c:
        c.ehlo()
        assert c.cmd("AUTH PLAIN " + plain(ALICE, "nope")) == failed("PLAIN", ALICE)
        assert c.cmd("AUTH PLAIN " + plain("nobody@example.test", "x"))[0] == 535


def test_cancel_each_mechanism(srv):
    srv.write("auth_max_failures", "0")
    with srv.session() as c:
        c.ehlo()
        assert c.cmd("AUTH PLAIN")[0] == 334
        assert c.cmd("*") == (501, "5.7.0 Authentication canceled")
        assert c.cmd("AUTH LOGIN")[0] == 334
        assert c.cmd(b64(ALICE))[0] == 334
        assert c.cmd("*") == (501, "5.7.0 Authentication canceled")
        assert c.cmd("AUTH CRAM-MD5")[0] == 334
        assert c.cmd("*") == (501, "5.7.0 Authentication canceled")
        assert c.cmd("NOOP")[0] == 250             # the session goes on normally


def test_garbage_is_refused(srv):
    srv.write("auth_max_failures", "0")
    with srv.session() as c:
        c.ehlo()
        assert c.cmd("AUTH PLAIN !!notbase64!!")[0:1] == (501,)
        assert c.cmd("AUTH PLAIN " + b64(ALICE)[:-1])[0] == 501          # bad padding
        assert c.cmd("AUTH LOGIN")[0] == 334
        assert c.cmd("%%%")[0] == 501
        assert c.cmd("AUTH CRAM-MD5")[0] == 334
        assert c.cmd(b64(f"{ALICE} not-a-digest"))[0] == 501
        assert c.cmd("AUTH PLAIN")[0] == 334
        assert c.cmd("A" * 20000)[0] == 501                             # too long
        assert c.cmd("AUTH PLAIN " + b64(b"\0alice@example.test\0\xff\xfe"))[0] == 501   # not UTF-8
        assert c.cmd("AUTH PLAIN " + plain("al\rice@example.test", "x"))[0] == 501
        assert c.cmd("AUTH PLAIN " + b64("no nul bytes")) == (535, "5.7.8 Authentication invalid")
        assert c.cmd("AUTH PLAIN " + plain(ALICE, "")) == (535, "5.7.8 Authentication invalid")
        assert c.cmd("AUTH PLAIN " + plain(ALICE, ALICE_PW, authz=BOB)) == (
            535, f"5.7.8 Authentication invalid for {ALICE}")
        assert c.cmd("AUTH PLAIN a b c") == (501, "5.5.4 Syntax error: AUTH mechanism [initial-response]")
        assert c.cmd("AUTH X-UNKNOWN") == (504, "5.5.4 Unimplemented authentication mechanism: X-UNKNOWN")
        assert c.cmd("AUTH CRAM-MD5 " + b64("x"))[0] == 501
        assert c.cmd("NOOP")[0] == 250
        assert c.cmd("AUTH PLAIN " + plain(ALICE, ALICE_PW))[0] == 235


def test_mechanism_switch_after_abort_carries_no_state(srv):
    """CVE-2011-1720 shape: an aborted exchange leaves nothing behind."""
    srv.write("auth_results_user", "1")
    with srv.session() as c:
        c.ehlo()
        assert c.cmd("AUTH LOGIN")[0] == 334
        assert c.cmd(b64(ALICE))[0] == 334
        assert c.cmd("*")[0] == 501                 # abandoned after alice's user name
        assert c.cmd("AUTH CRAM-MD5")[0] == 334
        assert c.cmd("*")[0] == 501
        assert c.cmd("AUTH PLAIN " + plain(BOB, BOB_PW)) == ok("PLAIN", BOB)
        code, _ = c.send_message("x@elsewhere.test", ["far@elsewhere.test"], "Subject: m\n\nx", ehlo=False)
        assert code == 250
    (msg,) = srv.messages()
    assert b"auth=pass (plain) smtp.auth=bob@example.test" in msg


def test_too_many_failures_disconnect(srv):
    with srv.session() as c:
        c.ehlo()
        assert c.cmd("AUTH PLAIN " + plain(ALICE, "bad1"))[0] == 535
        assert c.cmd("AUTH LOGIN")[0] == 334
        assert c.cmd("*")[0] == 501
        code, text = c.cmd("AUTH PLAIN " + plain(ALICE, "bad3"))
        assert code == 421 and "Too many failed authentication attempts" in text
        assert c.closed()
    srv.write("auth_max_failures", "1")
    with srv.session() as c:
        c.ehlo()
        assert c.cmd("AUTH PLAIN " + plain(ALICE, "bad"))[0] == 421
        assert c.closed()


def test_no_auth_during_a_transaction(srv):
    with srv.session() as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@b.test>")[0] == 250
        assert c.cmd("AUTH PLAIN " + plain(ALICE, ALICE_PW)) == (
            503, "5.5.1 AUTH not permitted during a mail transaction")


def test_authdeny_offers_everything_and_refuses(tmp_path):
    cfg = ConfigDir(tmp_path, plugins=["auth/auth_flat_file", "auth/authdeny", "rcpt_ok"],
                    files={"flat_auth_pw": USERS, "auth_allow_plaintext": "1"})
    with cfg.session() as c:
        assert auth_line(c.ehlo()) == "AUTH PLAIN LOGIN CRAM-MD5"
        assert c.cmd("AUTH PLAIN " + plain("mallory@example.test", "x"))[0] == 535
        assert c.cmd("AUTH PLAIN " + plain(ALICE, ALICE_PW))[0] == 235   # flat file first
    assert "fail, cannot authenticate mallory@example.test" in c.stderr


# -- what AUTH changes ----------------------------------------------------------------------------
def test_relaying_before_and_after_auth(srv):
    with srv.session() as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@example.test>")[0] == 250
        assert c.cmd("RCPT TO:<far@elsewhere.test>")[0] == 550
        assert c.cmd("RSET")[0] == 250
        assert c.cmd("AUTH PLAIN " + plain(ALICE, ALICE_PW))[0] == 235
        code, _ = c.send_message(ALICE, ["far@elsewhere.test"], "Subject: relay\n\nhi", ehlo=False)
        assert code == 250
    (msg,) = srv.messages()
    head = msg.split(b"\n\n")[0]
    assert b"auth=pass (plain)" in head and b"smtp.auth" not in head      # auth_results_user off
    assert b" ESMTPA;" in head


def test_passwords_never_logged(srv):
    srv.write("loglevel", "7")
    srv.write("auth_max_failures", "0")
    secrets = [ALICE_PW, BOB_PW, "wrongpass1"]
    with srv.session() as c:
        c.ehlo()
        c.cmd("AUTH PLAIN " + plain(ALICE, "wrongpass1"))
        c.cmd("AUTH LOGIN")
        c.cmd(b64(BOB))
        c.cmd(b64("wrongpass1"))
        _, challenge = c.cmd("AUTH CRAM-MD5")
        c.cmd(cram_answer(challenge, ALICE, ALICE_PW))
        c.cmd("QUIT")
    with srv.session() as c:
        c.ehlo()
        c.cmd("AUTH LOGIN")
        c.cmd(b64(BOB))
        c.cmd(b64(BOB_PW))
        c.cmd("QUIT")
    log = c.stderr
    assert "auth: pass, LOGIN for bob@example.test" in log
    for secret in secrets:
        assert secret not in log and b64(secret) not in log
    assert plain(ALICE, "wrongpass1") not in log


# -- real clients over TLS ----------------------------------------------------------------------------
def test_swaks_tls_auth_relay_end_to_end(tls_srv):
    require_tool("swaks")
    with SpawnServer(tls_srv) as server, SpawnServer(tls_srv, args=["--smtps"]) as smtps:
        runs = [(server.port, "--tls", "PLAIN"), (server.port, "--tls", "LOGIN"),
                (server.port, "--tls", "CRAM-MD5"), (smtps.port, "--tls-on-connect", "PLAIN")]
        for port, tls, mech in runs:
            run = subprocess.run(
                ["swaks", "--server", f"127.0.0.1:{port}", tls, "--auth", mech,
                 "--auth-user", ALICE, "--auth-password", ALICE_PW, "--from", ALICE,
                 "--to", "friend@elsewhere.test", "--helo", "client.test",
                 "--header", f"Subject: via {mech}", "--body", "relayed"],
                capture_output=True, text=True, timeout=60)
            assert run.returncode == 0, run.stdout + run.stderr
            assert f"235 2.7.0 {mech} authentication successful" in run.stdout
        bad = subprocess.run(
            ["swaks", "--server", f"127.0.0.1:{server.port}", "--tls", "--auth", "PLAIN",
             "--auth-user", ALICE, "--auth-password", "wrong", "--from", ALICE,
             "--to", "friend@elsewhere.test", "--helo", "client.test"],
            capture_output=True, text=True, timeout=60)
        assert bad.returncode != 0 and "535 5.7.8 PLAIN authentication failed" in bad.stdout
    messages = tls_srv.messages()
    assert len(messages) == 4
    assert all(b" ESMTPSA;" in m and b"auth=pass" in m for m in messages)
    assert ALICE_PW not in server.stderr


def test_smtplib_starttls_login_and_relay(tls_srv, certs):
    tls_srv.write("auth_max_failures", "5")        # smtplib's login() tries every mechanism
    with SpawnServer(tls_srv) as server:
        with smtplib.SMTP("127.0.0.1", server.port, local_hostname="client.test", timeout=20) as s:
            s.ehlo()
            assert not s.has_extn("auth")
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                s.sendmail(BOB, ["far@elsewhere.test"], b"Subject: no\r\n\r\nx\r\n")
            s.rset()
            s.starttls(context=client_context(certs))     # verifies 127.0.0.1 (SAN)
            s.ehlo()
            with pytest.raises(smtplib.SMTPAuthenticationError):
                s.login(BOB, "wrong")
            s.login(BOB, BOB_PW)                    # smtplib picks CRAM-MD5
            s.sendmail(BOB, ["far@elsewhere.test"], b"Subject: yes\r\n\r\nrelayed\r\n")
    (msg,) = tls_srv.messages()
    assert b"auth=pass (cram-md5)" in msg
