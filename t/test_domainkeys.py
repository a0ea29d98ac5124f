"""domainkeys and domainkeys_sign against the test nsd (auth.test: selector dk, policies
t=y/o=~ for auth.test and o=- for signall.auth.test): signing and verifying both ways,
the RFC 4870 nofws example checked by openssl, policy refusals, malformed signatures,
a dead DNS server."""

import base64
import re
import subprocess
import time

import pytest

from authtools import header_values, read_key, reply, results_of, state_file
from dnsfault import DNSRelay
from inproc import message_wire

JOE = ("From: Joe SixPack <joe@{dom}>\nTo: Suzie Q <suzie@example.test>\nSubject: Is dinner ready?\n"
       "\nHi.\n\nWe lost the game. Are you hungry yet?\n\nJoe.\n")


def sign_server(session_server, line="domainkeys_sign"):
    return session_server(line, files={"loglevel": "6", "dkim/auth.test/selector": "dk",
                                       "dkim/auth.test/private": read_key("auth-s1.private")})


def send(srv, text, sender="joe@auth.test", **talk):
    return srv.talk("EHLO client.auth.test", f"MAIL FROM:<{sender}>", "RCPT TO:<u@example.test>",
                    "DATA", message_wire(text.rstrip("\n")), "QUIT", **talk)


def signed_text(session_server, dom="auth.test", line="domainkeys_sign"):
    d = send(sign_server(session_server, line), JOE.format(dom=dom), relay_client=True)
    (msg,) = d.messages
    assert "pass, signed with d=auth.test s=dk" in d.log
    return msg["message"].decode()


def verify_server(session_server, line="domainkeys"):
    return session_server(line, files={"loglevel": "6"})


def dk_result(d):
    (r,) = results_of(d.messages[0], "domainkeys")
    return r.result, r.reason


def test_signed_here_verifies_here(session_server):
    text = signed_text(session_server)
    assert text.startswith("DomainKey-Signature: a=rsa-sha1; q=dns; c=nofws; s=dk; d=auth.test; "
                           "h=from:to:subject;")
    d = send(verify_server(session_server), text)
    assert d.codes[-2] == 250
    assert dk_result(d) == ("pass", None)
    (value,) = header_values(d.messages[0], "Authentication-Results")
    assert "domainkeys=pass header.d=auth.test header.from=joe@auth.test" in value


def test_the_rfc4870_nofws_example_and_the_signature_check_out_with_openssl(session_server, tmp_path):
    text = signed_text(session_server)
    b = re.search(r"b=([A-Za-z0-9+/=\s]+)", text.split("\n\n")[0]).group(1)
    (tmp_path / "sig").write_bytes(base64.b64decode("".join(b.split())))
    # RFC 4870 3.4.2.2 (nofws) worked by hand on the RFC's example message
    (tmp_path / "data").write_bytes(
        b"From:JoeSixPack<joe@auth.test>\r\nTo:SuzieQ<suzie@example.test>\r\n"
        b"Subject:Isdinnerready?\r\n\r\nHi.\r\n\r\nWelostthegame.Areyouhungryyet?\r\n\r\nJoe.\r\n")
    pub = subprocess.run(["openssl", "rsa", "-in", state_file("auth-s1.private"), "-pubout"],
                         capture_output=True, check=True).stdout
    (tmp_path / "pub").write_bytes(pub)
    out = subprocess.run(["openssl", "dgst", "-sha1", "-verify", str(tmp_path / "pub"),
                          "-signature", str(tmp_path / "sig"), str(tmp_path / "data")],
                         capture_output=True, text=True)
    assert out.stdout.strip() == "Verified OK", out


def test_simple_canonicalization(session_server):
    text = signed_text(session_server, line="domainkeys_sign canonicalization simple")
    assert " c=simple;" in text.split("\n")[0]
    assert dk_result(send(verify_server(session_server), text)) == ("pass", None)
    changed = text.replace("Subject: Is dinner ready?", "Subject:  Is dinner ready?")
    assert dk_result(send(verify_server(session_server), changed))[0] == "fail"


def test_nofws_survives_whitespace_changes_but_not_content_changes(session_server):
    text = signed_text(session_server)
    spaced = text.replace("We lost the game.", "We  lost   the game.")
    assert dk_result(send(verify_server(session_server), spaced)) == ("pass", None)
    changed = text.replace("We lost the game.", "We won the game.")
    d = send(verify_server(session_server), changed)
    assert d.codes[-2] == 250                       # auth.test's policy: t=y, o=~ -> never refused
    assert dk_result(d) == ("fail", "signature did not verify")


def test_a_domain_that_signs_all_refuses_failures(session_server):
    text = signed_text(session_server, dom="signall.auth.test")
    assert dk_result(send(verify_server(session_server), text)) == ("pass", None)
    changed = text.replace("We lost the game.", "We won the game.")
    d = send(verify_server(session_server), changed, sender="joe@signall.auth.test")
    assert reply(d, 5) == (552, "DomainKeys signature validation failed")
    d = send(verify_server(session_server, "domainkeys reject_type temp"), changed)
    assert reply(d, 5) == (452, "DomainKeys signature validation failed")
    for line in ("domainkeys warn_only 1", "domainkeys reject 0"):
        d = send(verify_server(session_server, line), changed)
        assert d.codes[-2] == 250 and dk_result(d)[0] == "fail"


@pytest.mark.parametrize("edit, result, reason", [
    (lambda t: t.replace(" s=dk;", " s=missing;"), "permerror", "no key"),
    (lambda t: t.replace(" s=dk;", " s=revoked;"), "permerror", "key revoked"),
    (lambda t: t.replace(" s=dk;", " s=badkey;"), "permerror", "bad key"),
    (lambda t: t.replace(" d=auth.test;", " d=example.test;"), "permerror", "d=example.test is not"),
    (lambda t: t.replace("a=rsa-sha1", "a=rsa-md5"), "permerror", "malformed signature"),
    (lambda t: re.sub(r"b=[^\n]*\n", "x=1\n", t, count=1), "permerror", "malformed signature"),
])
def test_malformed_signatures_and_keys(session_server, edit, result, reason):
    text = edit(signed_text(session_server))
    d = send(verify_server(session_server), text)
    assert d.codes[-2] == 250
    got = dk_result(d)
    assert got[0] == result and got[1].startswith(reason), got


def test_unsigned_mail_is_left_alone(session_server):
    d = send(verify_server(session_server), JOE.format(dom="auth.test"))
    assert d.codes[-2] == 250 and results_of(d.messages[0], "domainkeys") == []
    assert "skip, unsigned" in d.log


def test_dns_never_answering_defers_within_the_timeout(session_server):
    text = signed_text(session_server)
    with DNSRelay(silent=True) as relay:
        srv = session_server("domainkeys", files={"dns_servers": relay.address, "dns_timeout": "1"})
        start = time.monotonic()
        d = send(srv, text)
        elapsed = time.monotonic() - start
    assert reply(d, 5) == (452, "DomainKeys lookup failed, try again later")
    assert elapsed < 3, elapsed
