"""Documented engine calls of plugin API v1: add_capability() for EHLO keywords and
the AuthPlugin base (qpsmtpd_py/helpers/auth_plugin.py) that auth backends build on."""

import base64
import hashlib
import hmac

import pytest

from qpsmtpd_py.helpers.passwords import _crypt



@pytest.fixture
def config(mail_config):
    def make(plugins, files=None):
        files = {"auth_allow_plaintext": "1", "auth_max_failures": "0", "loglevel": "6",
                 **(files or {})}
        return mail_config(plugins=plugins, files=files)
    return make


def b64(text):
    return base64.b64encode(text.encode()).decode()


# -- add_capability --------------------------------------------------------------------------------
def test_add_capability_and_the_old_note_both_reach_ehlo(config):
    srv = config(["t_capability X-ONE X-TWO_2 note:X-NOTE", "rcpt_ok"])
    with srv.session() as c:
        code, lines = c.cmd("EHLO client.test")[0], c.lines
        assert code == 250
        extra = lines[lines.index("SMTPUTF8") + 1:]
        assert extra == ["X-ONE", "X-TWO 2", "X-NOTE"]         # each once, in order


def test_capabilities_belong_to_one_ehlo_reply(config):
    srv = config(["t_capability X-ONE", "rcpt_ok"])
    with srv.session() as c:
        assert c.cmd("HELO client.test")[0] == 250
        assert "X-ONE" not in c.text


def test_a_keyword_that_would_forge_a_reply_line_is_refused(config):
    srv = config(["t_capability INJECT", "rcpt_ok"])
    with srv.session() as c:
        code, text = c.cmd("EHLO client.test")
        assert code == 450 and "forged" not in text, text        # the plugin raised
    assert "bad EHLO keyword" in c.stderr


# -- AuthPlugin --------------------------------------------------------------------------------------
def attempt(c, mech, user, password):
    if mech == "PLAIN":
        return c.cmd("AUTH PLAIN " + b64(f"\0{user}\0{password}"))
    if mech == "LOGIN":
        c.cmd("AUTH LOGIN")
        c.cmd(b64(user))
        return c.cmd(b64(password))
    code, challenge = c.cmd("AUTH CRAM-MD5")
    assert code == 334, challenge
    digest = hmac.new(password.encode(), base64.b64decode(challenge), hashlib.md5).hexdigest()
    return c.cmd(b64(f"{user} {digest}"))


def one_attempt(srv, mech, user, password):
    with srv.session() as c:
        c.ehlo()
        result = attempt(c, mech, user, password)
        c.cmd("QUIT")
    return result[0], c.stderr


def test_store_with_clear_passwords_answers_plain_login_and_cram_md5(config):
    srv = config(["t_authbase amy@example.test:amypw", "rcpt_ok"])
    with srv.session() as c:
        c.ehlo()
        assert "AUTH PLAIN LOGIN CRAM-MD5" in c.lines
    for mech in ("PLAIN", "LOGIN", "CRAM-MD5"):
        code, log = one_attempt(srv, mech, "amy@example.test", "amypw")
        assert code == 235, (mech, log)
        assert f"t_authbase: pass, amy@example.test ({mech.lower()})" in log
        code, log = one_attempt(srv, mech, "amy@example.test", "nope")
        assert code == 535, mech
        assert "t_authbase: fail, amy@example.test: wrong password" in log


def test_store_with_a_crypt_hash(config):
    hashed = _crypt.crypt("hashpw", "$6$saltsalt")
    srv = config([f"t_authbase bea@example.test:{hashed}", "rcpt_ok"])
    assert one_attempt(srv, "PLAIN", "bea@example.test", "hashpw")[0] == 235
    assert one_attempt(srv, "PLAIN", "bea@example.test", "other")[0] == 535
    code, log = one_attempt(srv, "CRAM-MD5", "bea@example.test", "hashpw")
    assert code == 535 and "CRAM-MD5 needs the clear-text password" in log


def test_unknown_user_goes_to_the_next_plugin_and_unavailable_is_454(config):
    srv = config(["t_authbase amy@example.test:amypw", "t_authcheck cy@example.test:cypw",
                  "rcpt_ok"])
    code, log = one_attempt(srv, "PLAIN", "cy@example.test", "cypw")
    assert code == 235
    assert "t_authbase: skip, cy@example.test: not known here" in log
    assert "t_authcheck: pass, cy@example.test" in log
    code, log = one_attempt(srv, "PLAIN", "down@example.test", "x-secret")
    assert code == 454
    assert "t_authbase: error, down@example.test: store offline" in log


def test_check_backend_offers_no_cram_md5_and_wrong_password_policy(config):
    srv = config(["t_authcheck cy@example.test:cypw", "t_authbase cy@example.test:other",
                  "rcpt_ok"])
    with srv.session() as c:
        c.ehlo()
        assert "AUTH PLAIN LOGIN CRAM-MD5" in c.lines        # t_authbase offers CRAM-MD5
    # DENY (the default) ends the chain: the second plugin is never asked
    code, log = one_attempt(srv, "PLAIN", "cy@example.test", "other")
    assert code == 535 and "t_authbase" not in log
    # DECLINED lets the next plugin accept the same credentials
    srv = config(["t_authcheck cy@example.test:cypw declined", "t_authbase cy@example.test:other",
                  "rcpt_ok"])
    code, log = one_attempt(srv, "PLAIN", "cy@example.test", "other")
    assert code == 235 and "t_authbase: pass" in log
    srv = config(["t_authcheck cy@example.test:cypw", "rcpt_ok"])
    with srv.session() as c:
        c.ehlo()
        assert "AUTH PLAIN LOGIN" in c.lines
