"""The authentication plugins against their real backends (t/services: checkpw,
PAM, Dovecot IMAP, MariaDB vpopmail, slapd; a second qpsmtpd_py as the upstream
of auth_smtpd; t/stubs stand-ins for vpopmaild and CVM), plus restrict_submission."""

import base64
import hashlib
import hmac
import os
from urllib.parse import urlparse

import pytest

from harness import ConfigDir, free_port, service_env
from stubs import cvm, vpopmaild
from stubs.dovecot_tls import DovecotTLS
from stubs.spawn_server import SpawnServer
from stubs.tlsutil import install_certs, make_certs


def b64(text):
    return base64.b64encode(text.encode()).decode()


def attempt(cfg, mech, user, password, env=None):
    """One session: EHLO, AUTH <mech> with the credentials; returns (code, text).
    The server logs at LOGDEBUG (config below): the password must not be in the log."""
    with cfg.session(env=env) as c:
        c.ehlo()
        if mech == "PLAIN":
            result = c.cmd("AUTH PLAIN " + b64(f"\0{user}\0{password}"))
        elif mech == "LOGIN":
            c.cmd("AUTH LOGIN")
            c.cmd(b64(user))
            result = c.cmd(b64(password))
        else:
            code, challenge = c.cmd("AUTH CRAM-MD5")
            assert code == 334, challenge
            ticket = base64.b64decode(challenge)
            result = c.cmd(b64(f"{user} " + hmac.new(password.encode(), ticket, hashlib.md5).hexdigest()))
        c.cmd("QUIT")
    if len(password) >= 6:                        # short ones occur in ordinary words
        assert password not in c.stderr and b64(password) not in c.stderr
    return result


def config(tmp_path, plugin_line, files=None):
    files = {"auth_allow_plaintext": "1", "auth_max_failures": "0", "rcpthosts": "example.test",
             "loglevel": "7", **(files or {})}
    return ConfigDir(tmp_path, plugins=[plugin_line, "rcpt_ok", "queue/maildir {maildir}"],
                     files=files)


def assert_pass(result, mech="PLAIN"):
    assert result[0] == 235 and result[1].startswith(f"2.7.0 {mech} authentication successful"), result


def assert_fail(result, code=535):
    assert result[0] == code, result


# -- checkpassword --------------------------------------------------------------------------------
def test_auth_checkpassword(tmp_path):
    checkpw = service_env("QPT_CHECKPW")
    user, password = service_env("QPT_TEST_USER"), service_env("QPT_TEST_PASS")
    cfg = config(tmp_path, f"auth/auth_checkpassword checkpw {checkpw} true /bin/true")
    assert_pass(attempt(cfg, "PLAIN", user, password))
    assert_pass(attempt(cfg, "LOGIN", user, password), "LOGIN")
    assert_fail(attempt(cfg, "PLAIN", user, "Bad-Pa55"))
    assert_fail(attempt(cfg, "PLAIN", "nosuchuser", password))
    # the old name, configured through smtpauth-checkpassword
    cfg = config(tmp_path / "alias", "auth/authcheckpassword",
                 files={"smtpauth-checkpassword": f"{checkpw} /bin/true"})
    assert_pass(attempt(cfg, "PLAIN", user, password))


def test_auth_checkpassword_failures_of_the_program(tmp_path):
    """What the plugin hands the program (fd 3), and its temporary failures (454)."""
    seen = tmp_path / "seen"
    script = tmp_path / "fake-checkpw"
    script.write_text(f"#!/bin/sh\ncat <&3 | tr '\\000' '|' > {seen}\n"
                      "case \"$1\" in sleep) sleep 5;; tempfail) exit 111;; esac\nexit 1\n")
    script.chmod(0o755)
    for arg, code in (("tempfail", 454), ("sleep", 454), ("other", 535)):
        cfg = config(tmp_path / arg, f"auth/auth_checkpassword checkpw {script} true {arg} timeout 1")
        assert_fail(attempt(cfg, "PLAIN", "ivy", "ivy-secret"), code)
    assert seen.read_text().startswith("ivy|ivy-secret|")
    cfg = config(tmp_path / "missing", "auth/auth_checkpassword checkpw /nonexistent true /bin/true")
    assert_fail(attempt(cfg, "PLAIN", "ivy", "ivy-secret"), 454)


# -- PAM -----------------------------------------------------------------------------------------------
def test_authpam(tmp_path):
    service = service_env("QPT_PAM_SERVICE")
    user, password = service_env("QPT_TEST_USER"), service_env("QPT_TEST_PASS")
    cfg = config(tmp_path, f"auth/authpam {service}")
    assert_pass(attempt(cfg, "LOGIN", user, password), "LOGIN")
    assert_fail(attempt(cfg, "PLAIN", user, "Bad-Pa55"))
    cfg = config(tmp_path / "pwdfile", f"auth/authpam pam_service {service_env('QPT_PAM_PWDFILE_SERVICE')}")
    assert_pass(attempt(cfg, "PLAIN", "carol", "carolpw"))
    assert_fail(attempt(cfg, "PLAIN", "carol", "Bad-Pa55"))


# -- IMAP (Dovecot) --------------------------------------------------------------------------------
def test_auth_imap(tmp_path):
    host, port = service_env("QPT_IMAP_HOST"), service_env("QPT_IMAP_PORT")
    user, password = service_env("QPT_IMAP_USER"), service_env("QPT_IMAP_PW")
    cfg = config(tmp_path, f"auth/auth_imap {host} {port}")
    assert_pass(attempt(cfg, "PLAIN", user, password))
    assert_pass(attempt(cfg, "LOGIN", "bob@example.test", "bobpw"), "LOGIN")
    # one failure only: Dovecot delays the next login from this IP after each failed one
    assert_fail(attempt(cfg, "PLAIN", user, "Bad-Pa55"))
    # the test Dovecot has ssl = no: requiring STARTTLS must fail closed (454), never fall back
    cfg = config(tmp_path / "tls", f"auth/auth_imap {host} {port} tls starttls")
    assert_fail(attempt(cfg, "PLAIN", user, password), 454)
    cfg = config(tmp_path / "down", f"auth/auth_imap 127.0.0.1 {free_port()}")
    assert_fail(attempt(cfg, "PLAIN", user, password), 454)


def test_auth_imap_over_tls(tmp_path):
    service_env("QPT_IMAP_HOST")                    # Dovecot is installed and runs here
    certs = make_certs(str(tmp_path / "certs"))
    ca = os.path.join(certs, "qpsmtpd-ca.crt")
    with DovecotTLS(certs, {"hank@example.test": "hankpw"}) as imap:
        cfg = config(tmp_path / "starttls", f"auth/auth_imap 127.0.0.1 {imap.port} ca {ca}")
        assert_pass(attempt(cfg, "PLAIN", "hank@example.test", "hankpw"))
        cfg = config(tmp_path / "imaps", f"auth/auth_imap 127.0.0.1 {imap.imaps_port} tls imaps ca {ca}")
        assert_pass(attempt(cfg, "LOGIN", "hank@example.test", "hankpw"), "LOGIN")
        assert_fail(attempt(cfg, "PLAIN", "hank@example.test", "Bad-Pa55"))
        # a certificate that does not verify: no password is sent, temporary failure
        cfg = config(tmp_path / "noca", f"auth/auth_imap 127.0.0.1 {imap.port}")
        assert_fail(attempt(cfg, "PLAIN", "hank@example.test", "hankpw"), 454)
        with open(os.path.join(imap.dir, "dovecot.log")) as fh:
            log = fh.read()
    assert "Login: user=<hank@example.test>, method=PLAIN" in log and "TLS" in log


# -- another SMTP server (qpsmtpd_py with auth_flat_file) ------------------------------------------------
def test_auth_smtpd_against_an_upstream_qpsmtpd(tmp_path):
    certs = make_certs(str(tmp_path / "certs"))
    upstream = ConfigDir(tmp_path / "upstream", plugins=["tls", "auth/auth_flat_file", "rcpt_ok"],
                         files={"flat_auth_pw": "dave@example.test:davepw", "loglevel": "6"})
    install_certs(certs, upstream)
    ca = os.path.join(certs, "qpsmtpd-ca.crt")
    with SpawnServer(upstream) as server:
        cfg = config(tmp_path / "local", f"auth/auth_smtpd 127.0.0.1 {server.port} ca {ca}")
        assert_pass(attempt(cfg, "PLAIN", "dave@example.test", "davepw"))
        assert_pass(attempt(cfg, "LOGIN", "dave@example.test", "davepw"), "LOGIN")
        assert_fail(attempt(cfg, "PLAIN", "dave@example.test", "Bad-Pa55"))
        # an upstream certificate we cannot verify: no credentials are sent
        cfg = config(tmp_path / "noca", f"auth/auth_smtpd 127.0.0.1 {server.port}")
        assert_fail(attempt(cfg, "PLAIN", "dave@example.test", "davepw"), 454)
    log = server.stderr
    assert "PLAIN for dave@example.test" in log and "STARTTLS" in log
    assert "davepw" not in log


# -- vpopmail in MariaDB ------------------------------------------------------------------------------------
def test_auth_vpopmail_sql(tmp_path):
    host, port = service_env("QPT_MYSQL_HOST"), service_env("QPT_MYSQL_PORT")
    files = {"vpopmail_mysql_dsn": f"dbi:mysql:dbname={service_env('QPT_MYSQL_DB')};host={host};port={port}",
             "vpopmail_mysql_user": service_env("QPT_MYSQL_USER"),
             "vpopmail_mysql_pass": service_env("QPT_MYSQL_PW")}
    cfg = config(tmp_path, "auth/auth_vpopmail_sql", files)
    assert_pass(attempt(cfg, "PLAIN", "alice@example.test", "alicepw"))      # clear column
    assert_pass(attempt(cfg, "CRAM-MD5", "alice@example.test", "alicepw"), "CRAM-MD5")
    assert_pass(attempt(cfg, "LOGIN", "bob@example.test", "bobpw"), "LOGIN")  # sha512-crypt only
    assert_fail(attempt(cfg, "CRAM-MD5", "bob@example.test", "bobpw"))       # no clear password
    assert_fail(attempt(cfg, "PLAIN", "alice@example.test", "Bad-Pa55"))
    assert_fail(attempt(cfg, "PLAIN", "nobody@example.test", "x"))
    assert_fail(attempt(cfg, "PLAIN", "alice", "alicepw"))                   # no domain
    socket_files = dict(files, vpopmail_mysql_dsn="dbi:mysql:dbname=vpopmail;mysql_socket="
                        + service_env("QPT_MYSQL_SOCKET"))
    cfg = config(tmp_path / "sock", "auth/auth_vpopmail_sql", socket_files)
    assert_pass(attempt(cfg, "PLAIN", "alice@example.test", "alicepw"))
    down = dict(files, vpopmail_mysql_dsn=f"dbi:mysql:dbname=vpopmail;host=127.0.0.1;port={free_port()}")
    cfg = config(tmp_path / "down", "auth/auth_vpopmail_sql", down)
    assert_fail(attempt(cfg, "PLAIN", "alice@example.test", "alicepw"), 454)


# -- LDAP (slapd) -------------------------------------------------------------------------------------------
def test_auth_ldap_bind(tmp_path):
    uri = urlparse(service_env("QPT_LDAP_URI"))
    base = service_env("QPT_LDAP_BASE")
    line = (f"auth/auth_ldap_bind ldap_host {uri.hostname} ldap_port {uri.port} "
            f"ldap_base {base} ldap_timeout 5")
    cfg = config(tmp_path, line)
    assert_pass(attempt(cfg, "PLAIN", "alice", service_env("QPT_LDAP_USER_PW")))   # {SSHA}
    assert_pass(attempt(cfg, "LOGIN", "bob", "bobpw"), "LOGIN")                     # clear text
    assert_fail(attempt(cfg, "PLAIN", "alice", "Bad-Pa55"))
    assert_fail(attempt(cfg, "PLAIN", "nobody", "x"))
    assert_fail(attempt(cfg, "PLAIN", "*", "alicepw"))                  # filter chars escaped
    # the config file `ldap`, logging in with the mail address
    cfg = config(tmp_path / "file", "auth/auth_ldap_bind", files={"ldap": [
        f"ldap_host {uri.hostname}", f"ldap_port {uri.port}", f"ldap_base {base}",
        "ldap_auth_filter_attr mail"]})
    assert_pass(attempt(cfg, "PLAIN", "alice@example.test", "alicepw"))
    cfg = config(tmp_path / "down", f"auth/auth_ldap_bind ldap_port {free_port()} ldap_base {base}")
    assert_fail(attempt(cfg, "PLAIN", "alice", "alicepw"), 454)


# -- stand-in daemons -------------------------------------------------------------------------------------------
def test_auth_vpopmaild(tmp_path):
    server = vpopmaild.serve({"erin@example.test": "erinpw"})
    try:
        port = server.server_address[1]
        cfg = config(tmp_path, f"auth/auth_vpopmaild host 127.0.0.1 port {port}")
        assert_pass(attempt(cfg, "PLAIN", "erin@example.test", "erinpw"))
        assert_pass(attempt(cfg, "LOGIN", "erin@example.test", "erinpw"), "LOGIN")
        assert_fail(attempt(cfg, "PLAIN", "erin@example.test", "Bad-Pa55"))
        assert_fail(attempt(cfg, "PLAIN", "erin@example.test", "erinpw extra"))   # never sent
    finally:
        server.shutdown()
        server.server_close()
    assert_fail(attempt(cfg, "PLAIN", "erin@example.test", "erinpw"), 454)      # daemon gone


def test_auth_cvm_unix_local(tmp_path):
    path = str(tmp_path / "cvm.sock")
    server = cvm.serve(path, {"frank@example.test": "frankpw"})
    try:
        cfg = config(tmp_path / "c", f"auth/auth_cvm_unix_local cvm_socket {path}")
        assert_pass(attempt(cfg, "PLAIN", "frank@example.test", "frankpw"))
        assert_pass(attempt(cfg, "LOGIN", "frank@example.test", "frankpw"), "LOGIN")
        assert_fail(attempt(cfg, "PLAIN", "frank@example.test", "Bad-Pa55"))
        assert_fail(attempt(cfg, "PLAIN", "frank@tempfail", "frankpw"))
        # port 25 needs enable_smtp yes
        assert_fail(attempt(cfg, "PLAIN", "frank@example.test", "frankpw", env={"TCPLOCALPORT": "25"}))
        cfg = config(tmp_path / "d", f"auth/auth_cvm_unix_local cvm_socket {path} enable_smtp yes")
        assert_pass(attempt(cfg, "PLAIN", "frank@example.test", "frankpw", env={"TCPLOCALPORT": "25"}))
    finally:
        server.shutdown()
        server.server_close()


# -- restrict_submission -------------------------------------------------------------------------------------------
def test_restrict_submission(tmp_path):
    cfg = ConfigDir(tmp_path, plugins=["restrict_submission 587", "auth/auth_flat_file", "rcpt_ok",
                                       "queue/maildir {maildir}"],
                    files={"flat_auth_pw": "gina@example.test:ginapw", "auth_allow_plaintext": "1",
                           "rcpthosts": "example.test"})
    with cfg.session(env={"TCPLOCALPORT": "587"}) as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<gina@example.test>") == (530, "5.7.0 Authentication required")
        assert c.cmd("AUTH PLAIN " + b64("\0gina@example.test\0ginapw"))[0] == 235
        code, _ = c.send_message("gina@example.test", ["out@elsewhere.test"], "Subject: s\n\nx",
                                 ehlo=False)
        assert code == 250
    with cfg.session(env={"TCPLOCALPORT": "25"}) as c:       # other ports: inbound mail as usual
        code, _ = c.send_message("x@elsewhere.test", ["u@example.test"], "Subject: in\n\nx")
        assert code == 250
    assert len(cfg.messages()) == 2
    bad = ConfigDir(tmp_path / "bad", plugins=["restrict_submission submission"])
    with bad.session(read_greeting=False) as c:
        assert c.closed()
    assert "restrict_submission: ports 'submission': expected an integer 1-65535" in c.stderr
