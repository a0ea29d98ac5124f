"""dkim: verifying every signature against keys in the test nsd (auth.test, example.test),
signing for relay clients with keys in config/dkim/<domain>/ (rotation by selector,
parent domains, symlinks), and both directions against a real signer and verifier
(opendkim as a milter: its signatures verify here, ours verify there and with dkimpy)."""

import os
import time

import dkim
import pytest

from authtools import (auth_results, header_values, milter, milter_added, nsd_txt, read_key,
                       reply, results_of, split_message)
from dnsfault import DNSRelay
from inproc import message_wire

BODY = "Hello,\n\nthis is a test message.\n"
HEADER = ("From: Alice <alice@{dom}>\nTo: bob@example.test\nSubject: dkim test\n"
          "Date: Tue, 24 Nov 2026 01:00:00 +0000\nMessage-ID: <m{n}@{dom}>\n")


def text(dom="auth.test", n=1, body=BODY):
    return (HEADER.format(dom=dom, n=n) + "\n" + body).replace("\n", "\r\n").encode()


def signed(raw, selector=b"s1", domain=b"auth.test", key="auth-s1.private", **kw):
    """raw (CRLF bytes) with a DKIM-Signature made by dkimpy with a test key prepended."""
    sig = dkim.sign(raw, selector, domain, read_key(key), **kw)
    return sig + raw


def to_wire(raw):
    """CRLF message bytes -> DATA bytes (dot-stuffed, ends CRLF.CRLF)."""
    return message_wire(raw.decode("latin-1").replace("\r\n", "\n").rstrip("\n"))


def send(server, raw, sender="alice@auth.test", **talk):
    return server.talk("EHLO client.auth.test", f"MAIL FROM:<{sender}>", "RCPT TO:<u@example.test>",
                       "DATA", to_wire(raw), "QUIT", **talk)


@pytest.fixture
def server(session_server):
    def make(line="dkim", files=None):
        return session_server(line, files={"loglevel": "6", **(files or {})})
    return make


def dkim_of(message):
    return [(r.result, r.header_d, r.header_s) for r in results_of(message, "dkim")]


# -- verifying ----------------------------------------------------------------------------
def test_a_valid_signature_passes(server):
    d = send(server(), signed(text()))
    assert d.codes[-2] == 250
    (msg,) = d.messages
    assert dkim_of(msg) == [("pass", "auth.test", "s1")]
    (entry,) = results_of(msg, "dkim")
    assert entry.header_i == "@auth.test"
    assert "dkim=pass (1024-bit key) header.d=auth.test" in header_values(msg, "Authentication-Results")[0]
    assert d.connection.notes["dkim_pass_domains"] == ["auth.test"]
    assert "pass, pass d=auth.test s=s1" in d.log


def test_a_changed_body_fails_and_is_refused(server):
    raw = signed(text()).replace(b"a test message", b"a forged message")
    d = send(server(), raw)
    assert reply(d, 5) == (552, "signature invalid: body hash did not verify")
    assert d.messages == []
    d = send(server("dkim reject 0"), raw)
    assert d.codes[-2] == 250
    assert dkim_of(d.messages[0]) == [("fail", "auth.test", "s1")]
    assert "fail, tolerated" in d.log


def test_a_changed_signed_header_fails(server):
    raw = signed(text()).replace(b"Subject: dkim test", b"Subject: dkim TEST")
    d = send(server("dkim reject 0"), raw)
    assert dkim_of(d.messages[0]) == [("fail", "auth.test", "s1")]
    (entry,) = results_of(d.messages[0], "dkim")
    assert entry.reason == "signature did not verify"


def test_every_signature_is_verified_and_reported(server):
    raw = text()
    raw = signed(raw)                                              # good, s1
    raw = signed(raw, selector=b"badkey", key="auth-s2.private")   # a key record that is no key
    raw = signed(raw, selector=b"revoked", key="auth-s2.private")  # p= empty
    raw = signed(raw, selector=b"missing", key="auth-s2.private")  # no record at all
    raw = signed(raw, selector=b"s1", key="auth-s2.private")       # the wrong key for s1
    d = send(server(), raw)
    assert d.codes[-2] == 250                                      # one passes: accepted
    got = [(r.result, r.header_s, r.reason) for r in results_of(d.messages[0], "dkim")]
    assert [g[:2] for g in got] == [("fail", "s1"), ("permerror", "missing"), ("permerror", "revoked"),
                                    ("permerror", "badkey"), ("pass", "s1")]
    assert got[1][2] == "no key" and got[2][2] == "key revoked"
    assert got[3][2].startswith("bad key")


@pytest.mark.parametrize("damage, reason", [
    (lambda sig: sig.replace(b" b=", b" x="), "malformed signature"),         # no b=
    (lambda sig: sig.replace(b"a=rsa-sha256", b"a=rsa-md5"), "malformed signature"),
    (lambda sig: sig.replace(b"v=1;", b"v=2;"), "malformed signature"),
])
def test_malformed_signatures_are_permerror_not_refused(server, damage, reason):
    raw = text()
    sig = dkim.sign(raw, b"s1", b"auth.test", read_key("auth-s1.private"))
    d = send(server(), damage(sig) + raw)
    assert d.codes[-2] == 250
    (entry,) = results_of(d.messages[0], "dkim")
    assert entry.result == "permerror" and entry.reason.startswith(reason)


def test_no_signature_is_none(server):
    d = send(server(), text())
    assert d.codes[-2] == 250
    assert [r.result for r in results_of(d.messages[0], "dkim")] == ["none"]


def test_one_authentication_results_per_message_on_one_connection(server):
    srv = server()
    d = srv.talk("EHLO client.auth.test",
                 "MAIL FROM:<a@auth.test>", "RCPT TO:<u@example.test>", "DATA", to_wire(signed(text())),
                 "MAIL FROM:<a@auth.test>", "RCPT TO:<u@example.test>", "DATA", to_wire(text(n=2)),
                 "QUIT")
    first, second = d.messages
    assert len(header_values(first, "Authentication-Results")) == 1
    assert [r.result for r in results_of(first, "dkim")] == ["pass"]
    assert [(r.method, r.result) for r in auth_results(second)[0].results] == [("auth", "none"),
                                                                               ("dkim", "none")]


def test_dns_never_answering_is_a_temporary_failure_within_the_timeout(server):
    with DNSRelay(silent=True) as relay:
        srv = server(files={"dns_servers": relay.address, "dns_timeout": "1"})
        start = time.monotonic()
        d = send(srv, signed(text()))
        elapsed = time.monotonic() - start
    code, msg = reply(d, 5)
    assert code == 452 and msg.startswith("Please try again later - key lookup failed"), d.pairs
    assert elapsed < 3, elapsed


def test_dns_stopping_mid_session(server):
    with DNSRelay() as relay:
        srv = server(files={"dns_servers": relay.address, "dns_timeout": "1"})

        def stop(_=None):
            relay.silent = True
        start = time.monotonic()
        d = srv.talk("EHLO client.auth.test",
                     "MAIL FROM:<a@auth.test>", "RCPT TO:<u@example.test>", "DATA", to_wire(signed(text())),
                     stop,
                     "MAIL FROM:<a@auth.test>", "RCPT TO:<u@example.test>", "DATA",
                     to_wire(signed(text(n=3), selector=b"s2", key="auth-s2.private")), "QUIT")
        elapsed = time.monotonic() - start
    assert [r.result for r in results_of(d.messages[0], "dkim")] == ["pass"]
    assert len(d.messages) == 1
    assert reply(d, 9)[0] == 452
    assert elapsed < 4, elapsed


def test_rfc6376_canonicalization_example(server):
    """RFC 6376 3.4.5: relaxed canonicalization ignores the example's whitespace
    changes (header name case, space after the colon, folding, trailing blanks and
    empty lines at the end of the body); simple does not. (The example's `B :`, a
    space before the colon, is obsolete syntax that dkimpy refuses to parse.)"""
    example = (b"A: X\r\nB: Y\t\r\n\tZ  \r\n\r\n C \r\nD \t E\r\n\r\n\r\n")
    relaxed_same = (b"a:X\r\nb:Y Z\r\n\r\n C\r\nD E\r\n")
    base = b"From: alice@auth.test\r\nSubject: canon\r\n"
    for canon, verdict in (((b"relaxed", b"relaxed"), "pass"), ((b"simple", b"simple"), "fail")):
        sig = dkim.sign(base + example, b"s1", b"auth.test", read_key("auth-s1.private"),
                        canonicalize=canon, include_headers=[b"from", b"subject", b"a", b"b"])
        d = send(server("dkim reject 0"), sig + base + relaxed_same)
        assert [r.result for r in results_of(d.messages[0], "dkim")] == [verdict], canon
    # the published canonical forms themselves
    from dkim.canonicalization import Relaxed, Simple
    headers = [(b"A", b" X\r\n"), (b"B ", b" Y\t\r\n\tZ  \r\n")]
    assert Relaxed.canonicalize_headers(headers) == [(b"a", b"X\r\n"), (b"b", b"Y Z\r\n")]
    body = b" C \r\nD \t E\r\n\r\n\r\n"
    assert Relaxed.canonicalize_body(body) == b" C\r\nD E\r\n"
    assert Simple.canonicalize_body(body) == b" C \r\nD \t E\r\n"


def test_mail_signed_by_opendkim_verifies_here(server):
    fields, body = split_message(text(dom="example.test"))
    res = milter(fields, body, "127.0.0.1")               # internal host: opendkim signs
    (sig,) = milter_added(res, "DKIM-Signature")
    raw = f"DKIM-Signature: {sig}\r\n".encode() + text(dom="example.test")
    d = send(server(), raw, sender="alice@example.test")
    assert d.codes[-2] == 250
    assert dkim_of(d.messages[0]) == [("pass", "example.test", os.environ.get("QPT_DKIM_SELECTOR", "sel"))]


# -- signing -------------------------------------------------------------------------------
def key_dir(files, domain="auth.test", selector="s1", key="auth-s1.private", name="private"):
    files[f"dkim/{domain}/selector"] = selector
    files[f"dkim/{domain}/{name}"] = read_key(key)
    return files


def test_relay_clients_are_signed_and_opendkim_and_dkimpy_agree(server):
    srv = server(files=key_dir({}))
    d = send(srv, text(), relay_client=True)
    (msg,) = d.messages
    (sig,) = header_values(msg, "DKIM-Signature")
    assert " d=auth.test;" in f" {sig}" and " s=s1;" in f" {sig}" and "a=rsa-sha256" in sig
    assert "c=relaxed/relaxed" in sig
    assert "pass, signed with d=auth.test s=s1" in d.log
    raw = msg["message"].replace(b"\n", b"\r\n")
    assert dkim.verify(raw, dnsfunc=nsd_txt)
    fields, body = split_message(raw)
    res = milter(fields, body, "127.0.0.5", sender="alice@auth.test")   # external: opendkim verifies
    (ar,) = milter_added(res, "Authentication-Results")
    assert "dkim=pass" in ar and "header.d=auth.test" in ar, ar
    # and the same message changed on the way fails there
    res = milter(fields, body.replace(b"test message", b"TEST message"), "127.0.0.5",
                 sender="alice@auth.test")
    assert res[-1][0] == "y" or "dkim=fail" in "".join(milter_added(res, "Authentication-Results"))


def test_key_rotation_by_selector(server):
    files = key_dir({})
    files["dkim/auth.test/s2.private"] = read_key("auth-s2.private")
    srv = server(files=files)
    first = send(srv, text(), relay_client=True).messages[0]
    # the admin switches the selector: the next message uses s2.private, no restart
    with open(os.path.join(srv.config.dir, "dkim/auth.test/selector"), "w") as fh:
        fh.write("s2\n")
    second = send(srv, text(n=2), relay_client=True).messages[0]
    for msg, selector in ((first, "s1"), (second, "s2")):
        (sig,) = header_values(msg, "DKIM-Signature")
        assert f" s={selector};" in f" {sig}"
        assert dkim.verify(msg["message"].replace(b"\n", b"\r\n"), dnsfunc=nsd_txt)


def test_parent_domain_key_and_symlinked_domains(server):
    files = key_dir({})
    srv = server(files=files)
    os.symlink(os.path.join(srv.config.dir, "dkim", "auth.test"),
               os.path.join(srv.config.dir, "dkim", "client.example"))
    for dom in ("mail.sub.auth.test", "client.example"):
        msg = send(srv, text(dom=dom), relay_client=True).messages[0]
        (sig,) = header_values(msg, "DKIM-Signature")
        assert " d=auth.test;" in f" {sig}", dom
        assert dkim.verify(msg["message"].replace(b"\n", b"\r\n"), dnsfunc=nsd_txt)


def test_no_key_or_an_unusable_key_sends_unsigned(server):
    srv = server()
    d = send(srv, text(), relay_client=True)
    assert d.codes[-2] == 250 and header_values(d.messages[0], "DKIM-Signature") == []
    assert "skip, DKIM not configured for auth.test" in d.log
    srv = server(files={"dkim/auth.test/selector": "s1", "dkim/auth.test/private": "not a key"})
    d = send(srv, text(), relay_client=True)
    assert d.codes[-2] == 250 and header_values(d.messages[0], "DKIM-Signature") == []
    assert "error, signing for auth.test" in d.log
    srv = server(files={"dkim/nosel.test/private": read_key("auth-s1.private")})
    d = send(srv, text(dom="nosel.test"), relay_client=True)
    assert d.codes[-2] == 250 and "error, cannot read the selector" in d.log


def test_relay_clients_are_not_verified(server):
    raw = signed(text()).replace(b"a test message", b"a forged message")
    d = send(server(), raw, relay_client=True)
    assert d.codes[-2] == 250
    assert results_of(d.messages[0], "dkim") == []



def test_inbound_authentication_results_are_renamed_unless_a_signature_covers_them(server):
    forged = b"Authentication-Results: mx.example.test; dkim=pass header.d=bank.test\r\n"
    d = send(server(), forged + text())
    (msg,) = d.messages
    (ours,) = header_values(msg, "Authentication-Results")
    assert "bank.test" not in ours and "dkim=none" in ours
    assert header_values(msg, "Original-Authentication-Results") == [
        "mx.example.test; dkim=pass header.d=bank.test"]
    covered = signed(forged + text(), include_headers=[b"from", b"subject", b"authentication-results"])
    d = send(server(), covered)
    (msg,) = d.messages
    assert len(header_values(msg, "Authentication-Results")) == 2      # renaming would break d=auth.test
    assert [r.result for r in results_of_ours(msg)] == ["none", "pass"]


def results_of_ours(message):
    from authtools import auth_results
    return [r for ar in auth_results(message) for r in ar.results
            if ar.authserv_id == "mx.example.test" and r.method in ("auth", "dkim")][:2]


def test_authenticated_users_are_signed(session_server):
    import base64
    files = key_dir({"auth_allow_plaintext": "1", "loglevel": "6"})
    srv = session_server("t_authcheck alice@auth.test:secret", "dkim", files=files)
    token = base64.b64encode(b"\0alice@auth.test\0secret").decode()
    d = srv.talk("EHLO client.auth.test", f"AUTH PLAIN {token}", "MAIL FROM:<alice@auth.test>",
                 "RCPT TO:<bob@elsewhere.test>", "DATA", to_wire(text()), "QUIT")
    assert reply(d, 2)[0] == 235
    (msg,) = d.messages
    (sig,) = header_values(msg, "DKIM-Signature")
    assert " d=auth.test;" in f" {sig}"
    assert dkim.verify(msg["message"].replace(b"\n", b"\r\n"), dnsfunc=nsd_txt)
