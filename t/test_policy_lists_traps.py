"""denybounce, spamtrap, redirect and IDN over real SMTP sessions."""

import os

import pytest

from test_policy_lists import envelope, send_data


@pytest.fixture
def policy(mail_config):
    def make(*lines, files=None):
        return mail_config(*lines, files={"rcpthosts": "example.test\nxn--bcher-kva.example",
                                          "loglevel": "6", **(files or {})})
    return make


# -- denybounce ---------------------------------------------------------------------------------

def test_denybounce(policy):
    listed = "noreply@example.test\n@news.example.test\nno-reply\n^bounce-.*@example\\.test$ custom words\n"
    srv = policy("denybounce", files={"denybounce": listed, "rcpthosts": "example.test\nnews.example.test"})
    with srv.session() as c:
        c.ehlo()
        replies = envelope(c, "", "NoReply@example.test", "x@news.example.test", "no-reply@example.test",
                           "bounce-7@example.test", "person@example.test")
        assert replies[0] == (550, "5.7.1 Sorry, NoReply@example.test sends no mail, so it accepts no bounces")
        assert replies[1][0] == 550 and replies[2][0] == 550
        assert replies[3] == (550, "5.7.1 custom words")
        assert replies[4][0] == 250
        # mail with a real sender is not affected
        assert [r[0] for r in envelope(c, "a@far.test", "noreply@example.test", "no-reply@example.test")] \
            == [250, 250]


# -- spamtrap ---------------------------------------------------------------------------------

def test_spamtrap_delivers_elsewhere(policy, tmp_path):
    traps = "trap@example.test archive@example.test\n@honeypot.test\nbadline not-an-address\n"
    srv = policy("spamtrap deliver_to training@example.test", files={"spamtrap": traps})
    srv.set_plugins(["spamtrap deliver_to training@example.test", "rcpt_ok",
                     "queue/maildir {maildir} %u"])
    with srv.session() as c:
        c.ehlo()
        replies = envelope(c, "spammer@far.test", "trap@example.test", "x@honeypot.test",
                           "y@honeypot.test", "real@example.test")
        assert [r[0] for r in replies] == [250, 250, 250, 250], "traps are accepted, honeypot.test too"
        assert send_data(c)[0] == 250
    def box(address):
        new = os.path.join(srv.maildir, address, "new")
        files = os.listdir(new) if os.path.isdir(new) else []
        return [open(os.path.join(new, f), "rb").read() for f in files]
    (archived,) = box("archive@example.test")
    (training,) = box("training@example.test")
    (real,) = box("real@example.test")
    assert not box("trap@example.test") and not box("x@honeypot.test")
    for msg in (archived, training, real):
        assert b"X-Spamtrap: trap@example.test\n" in msg and b"X-Spamtrap: y@honeypot.test\n" in msg
    log = c.stderr
    assert f"{os.path.join(srv.dir, 'spamtrap')}:3: spamtrap: destination 'not-an-address' is not an address" in log
    assert "trap hit: trap@example.test" in log


def test_spamtrap_without_destination_keeps_the_trap(policy):
    srv = policy("spamtrap", files={"spamtrap": "trap@example.test"})
    with srv.session() as c:
        code, text = c.send_message("spammer@far.test", ["trap@example.test"], "Subject: buy\n\nnow")
        assert code == 250, text
        assert envelope(c, "friend@far.test", "real@example.test")[0][0] == 250
    (msg,) = srv.messages()
    assert b"Delivered-To: trap@example.test\n" in msg and b"X-Spamtrap: trap@example.test\n" in msg


# -- redirect ---------------------------------------------------------------------------------

@pytest.fixture
def homes(tmp_path):
    """A home directory tree with alice (moved), bob (no .redirect) and bad files."""
    root = tmp_path / "home"
    def home(user, content=None, mode=0o644, link=None):
        path = root / user
        path.mkdir(parents=True)
        if content is not None:
            (path / ".redirect").write_text(content)
            os.chmod(path / ".redirect", mode)
        if link:
            os.symlink(link, path / ".redirect")
    home("alice", "# moved in 2024\n\nalice@new-job.test\n")
    home("bob")
    home("carol", "carol@elsewhere.test\n", mode=0o666)
    home("dave", "this is not an address\n")
    home("erin", link=str(root / "alice" / ".redirect"))
    return root


def test_redirect_551(policy, homes):
    srv = policy("redirect", files={"redirect_homes": f"{homes}/%u"})
    with srv.session() as c:
        c.ehlo()
        replies = envelope(c, "s@far.test", "Alice@example.test", "alice+news@example.test",
                           "bob@example.test", "carol@example.test", "dave@example.test",
                           "erin@example.test", "\"../alice\"@example.test", "alice@far.test")
        assert replies[0] == (551, "5.1.6 User not local; please try <alice@new-job.test>")
        assert replies[1] == replies[0]
        assert [r[0] for r in replies[2:7]] == [250] * 5
        assert replies[7] == (550, "5.7.1 Relaying denied (#5.7.1)"), "other domains are not looked up"
        assert send_data(c)[0] == 250
    (msg,) = srv.messages()
    assert b"Delivered-To: alice" not in msg
    log = c.stderr
    assert "carol/.redirect: writable by others or foreign owner" in log
    assert "dave/.redirect: 'this is not an address' is not an address" in log
    assert "erin/.redirect:" in log


def test_redirect_without_esmtp_and_with_getpwnam(policy, tmp_path):
    srv = policy("redirect")
    with srv.session() as c:
        assert c.cmd("HELO client.test")[0] == 250
        # root's home (/root) has no .redirect: nothing happens
        assert envelope(c, "s@far.test", "root@example.test", "nosuchuser@example.test") == [
            (250, "<root@example.test>, recipient ok"), (250, "<nosuchuser@example.test>, recipient ok")]
    srv.write("redirect_homes", f"{tmp_path}/%d/%u")
    (tmp_path / "example.test" / "zed").mkdir(parents=True)
    (tmp_path / "example.test" / "zed" / ".redirect").write_text("<zed@far.test>\n")
    with srv.session() as c:
        assert c.cmd("HELO client.test")[0] == 250
        assert envelope(c, "s@far.test", "zed@example.test") == [
            (551, "User not local; please try <zed@far.test>")]


# -- IDN ------------------------------------------------------------------------------------------

def test_idn_converts_domains_to_a_labels(policy):
    srv = policy("IDN", "badmailfrom", files={"badmailfrom": "@xn--spm-rla.test"})
    with srv.session() as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<jörg@Bücher.example> SMTPUTF8") == (
            250, "2.1.0 <jörg@xn--bcher-kva.example>, sender OK - how exciting to get mail from you!")
        assert c.cmd("RCPT TO:<anna@BÜCHER.example>") == (
            250, "2.1.5 <anna@xn--bcher-kva.example>, recipient ok"), "rcpthosts has the A-label"
        assert c.cmd("RCPT TO:<x@example.test>")[0] == 250
        assert send_data(c)[0] == 250
        # badmailfrom sees the A-label of a U-label sender domain
        assert c.cmd("MAIL FROM:<x@späm.test> SMTPUTF8")[0] == 250
        assert c.cmd("RCPT TO:<x@example.test>")[0] == 550
        # an invalid IDN is left alone (and then not one of our domains)
        assert c.cmd("RSET")[0] == 250
        assert c.cmd("MAIL FROM:<a@far.test> SMTPUTF8")[0] == 250
        assert c.cmd("RCPT TO:<a@bad\u2603\u0301x.example>")[0] == 550
    (msg,) = srv.messages()
    assert msg.startswith("Return-Path: <jörg@xn--bcher-kva.example>\n".encode())
    assert b"Delivered-To: anna@xn--bcher-kva.example\n" in msg
    assert "not a valid IDN" in c.stderr


def test_idn_needs_smtputf8_in_the_core(policy):
    srv = policy("IDN")
    with srv.session() as c:
        c.ehlo()
        code, text = c.cmd("MAIL FROM:<a@bücher.example>")
        assert code == 553 and "5.6.7" in text
