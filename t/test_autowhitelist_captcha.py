"""autowhitelist_captcha in in-process sessions: the challenge mail (through the queue
plugins, with a real PNG drawn by Pillow), the right answer whitelists, wrong answers
count down to the blacklist, state in the shared store."""

import base64
import email
import io
import re

import pytest

from scanhelp import data_reply, message, transaction
from qpsmtpd_py.helpers.store import open_store

pytestmark = pytest.mark.no_services
from PIL import Image as PIL  # noqa: E402  (the captcha extra)
SENDER = "stranger@far.test"


@pytest.fixture
def srv(session_server, tmp_path):
    return session_server("autowhitelist_captcha", files={
        "loglevel": "6", "store_dir": str(tmp_path / "store"),
        "autowhitelist_captcha": "boss@example.test\n@protected.test\n",
        "rcpthosts": "example.test\nprotected.test"})


def send(srv, sender=SENDER, rcpt="boss@example.test", subject="hello", body="Hi boss\n",
         extra=""):
    text = message(body, f"From: <{sender}>\nTo: <{rcpt}>\nSubject: {subject}\n{extra}")
    return srv.talk(*transaction(text, sender=sender, recipients=(rcpt,)))


def challenge_of(d):
    [mail] = d.messages
    assert mail["sender"] == "<>" and mail["recipients"] == [f"<{SENDER}>"]
    token = re.search(r"\[captcha:(\w+)\]", mail["header"]).group(1)
    return mail, token


def answer_for(srv, token):
    import json
    return json.loads(open_store(srv.app).table("captcha_pending").get(token))["answer"]


def test_challenge_answer_whitelist(srv):
    d = send(srv)
    code, text = data_reply(d)
    assert code == 452 and text.startswith(f"Your address is not verified yet: a challenge was sent to {SENDER}")
    mail, token = challenge_of(d)
    parsed = email.message_from_bytes(mail["message"])
    assert parsed["From"] == "<boss@example.test>" and parsed["Auto-Submitted"] == "auto-replied"
    [png] = [p for p in parsed.walk() if p.get_content_type() == "image/png"]
    image = PIL.open(io.BytesIO(png.get_payload(decode=True)))
    assert image.format == "PNG" and image.size == (220, 80)

    d = send(srv)                                          # the sender's server retries
    assert data_reply(d) == (452, f"Your address is not verified yet: answer the challenge sent to {SENDER}")
    assert d.messages == []                                # no second challenge

    answer = answer_for(srv, token)
    d = send(srv, subject=f"Re: confirm [captcha:{token}]", body="WRONG1\n")
    assert data_reply(d) == (552, "Wrong answer to the challenge, 4 tries left")
    d = send(srv, subject=f"Re: confirm [captcha:{token}]", body=f"> quoted\n {answer.lower()} \n")
    assert data_reply(d) == (250, "Thank you, your address is now whitelisted")
    assert d.messages == []                                # the answer is not delivered
    d = send(srv)
    assert data_reply(d)[0] == 250 and len(d.messages) == 1


def test_five_wrong_answers_blacklist(srv):
    _, token = challenge_of(send(srv))
    replies = [data_reply(send(srv, subject=f"[captcha:{token}]", body="nope\n")) for _ in range(5)]
    assert replies[3] == (552, "Wrong answer to the challenge, 1 tries left")
    assert replies[4] == (552, "Wrong answer to the challenge; your address is now blacklisted here")
    assert data_reply(send(srv)) == (552, "Your address is blacklisted here")
    open_store(srv.app).table("captcha_blacklist").delete(SENDER)      # the admin forgives
    assert data_reply(send(srv))[0] == 452


def test_who_is_challenged(srv):
    assert data_reply(send(srv, rcpt="other@example.test"))[0] == 250       # not protected
    d = send(srv, sender="", rcpt="x@protected.test")                      # a bounce
    assert data_reply(d)[0] == 250
    d = send(srv, extra="Precedence: bulk\n")
    assert data_reply(d) == (552, "Automatic mail from unknown senders is not accepted here")
    d = send(srv, extra="Reply-To: Real Person <real@reply.test>\n")
    assert data_reply(d)[0] == 452 and d.messages[0]["recipients"] == ["<real@reply.test>"]


def test_static_lists(session_server, tmp_path):
    srv = session_server("autowhitelist_captcha", files={
        "store_dir": str(tmp_path / "store"), "autowhitelist_captcha": "example.test",
        "autowhitelist_captcha.whitelist": "@friends.test", "autowhitelist_captcha.blacklist": "bad@x.test"})
    assert data_reply(send(srv, sender="a@friends.test"))[0] == 250
    assert data_reply(send(srv, sender="bad@x.test"))[0] == 552
