"""aliases / aliases_check / aliases_rewrite (Holzer's address aliases) and
check_alias (/etc/aliases) over real SMTP sessions."""

import os
import re

import pytest

from test_policy_lists import envelope, send_data

NO_MAILBOX = (550, "5.1.1 Sorry, no mailbox here by that name. (#5.1.1)")

ALIASES = """# Holzer-style aliases
hjp,peter.holzer@example.test,example.org (denysoft_greylist, spamassassin_reject_threshold=10): hjp@mail.example.test
postmaster, abuse: sysadm@example.test
sysadm@example.test: hjp@example.test, gina@example.test
hjp@mail.example.test: hjp@mail.example.test
gina@example.test (majordomo_list=/var/lib/majordomo/staff): gina@example.test
loop1@example.test: loop2@example.test
loop2@example.test: loop1@example.test, gina@example.test
broken line without colon
bad@example.test: not-an-address
"""


@pytest.fixture
def server(mail_config):
    def make(*lines, files=None):
        return mail_config(*lines, files={"rcpthosts": "example.test\nexample.org\nmail.example.test",
                                          "loglevel": "6", **(files or {})})
    return make


def delivered_to(msg):
    return re.findall(rb"^Delivered-To: (.*)$", msg, re.M)


@pytest.mark.parametrize("plugins", [("aliases",), ("aliases_check", "aliases_rewrite")])
def test_aliases_check_and_rewrite(server, plugins):
    srv = server(*plugins, "t_rcpt_notes", files={"aliases": ALIASES})
    with srv.session() as c:
        c.ehlo()
        replies = envelope(c, "s@far.test", "postmaster+test@example.test", "Peter.Holzer@example.org",
                           "postmaster", "loop1@example.test", "nobody@example.test",
                           "someone@far.test", "abuse@example.org", "bad@example.test")
        assert [r[0] for r in replies[:4]] == [250] * 4
        assert replies[4] == NO_MAILBOX
        assert replies[5] == (550, "5.7.1 Relaying denied (#5.7.1)"), "other domains: rcpt_ok decides"
        assert replies[6][0] == 250, "bare local parts work in every domain of ours"
        assert replies[7] == NO_MAILBOX, "the unparsable line was skipped"
        assert send_data(c)[0] == 250
    (msg,) = srv.messages()
    assert delivered_to(msg) == [b"hjp+test@mail.example.test", b"gina+test@example.test",
                                 b"hjp@mail.example.test", b"gina@example.test",
                                 b"loop1@example.test"]
    notes = re.findall(rb"^X-Rcpt-Notes: (.*)$", msg, re.M)
    assert (b"hjp@mail.example.test alias_of=Peter.Holzer@example.org recipient_options="
            b"{denysoft_greylist:True,spamassassin_reject_threshold:10}") in notes
    assert b"gina+test@example.test alias_of=postmaster+test@example.test recipient_options={}" in notes
    log = c.stderr
    path = os.path.join(srv.dir, "aliases")
    assert f"{path}:9: no ':' between the alias and its expansion; line skipped" in log
    assert f"{path}:10: 'not-an-address' is not an address user@domain; line skipped" in log


def test_aliases_check_notes_without_rewrite(server):
    srv = server("aliases_check", "t_rcpt_notes", files={"aliases": ALIASES})
    with srv.session() as c:
        code, text = c.send_message("s@far.test", ["GINA@example.test", "hjp+x@example.org"], "Subject: x\n\nhi")
        assert code == 250, text
    (msg,) = srv.messages()
    assert delivered_to(msg) == [b"GINA@example.test", b"hjp+x@example.org"]
    notes = re.findall(rb"^X-Rcpt-Notes: (.*)$", msg, re.M)
    assert notes == [
        b"GINA@example.test expanded_recipients=[gina@example.test] "
        b"recipient_options={majordomo_list:/var/lib/majordomo/staff}",
        b"hjp+x@example.org expanded_recipients=[hjp+x@mail.example.test] "
        b"recipient_options={denysoft_greylist:True,spamassassin_reject_threshold:10}"]


def test_aliases_relay_clients_are_not_refused(server):
    srv = server("relay", "aliases", files={"aliases": ALIASES, "relayclients": "192.0.2.10"})
    with srv.session() as c:
        code, text = c.send_message("me@example.test", ["nobody@example.test", "friend@far.test"],
                                    "Subject: x\n\nhi")
        assert code == 250, text
    assert delivered_to(srv.messages()[0]) == [b"nobody@example.test", b"friend@far.test"]


# -- check_alias ----------------------------------------------------------------------------------

ETC_ALIASES = """# /etc/aliases
postmaster: root
root:   alice
sales:  alice, bob,
        carol
"odd name": alice
Mixed: alice
broken line
"""


def test_check_alias(server, tmp_path):
    path = tmp_path / "aliases"
    path.write_text(ETC_ALIASES)
    srv = server(f"check_alias file {path}")
    with srv.session() as c:
        c.ehlo()
        replies = envelope(c, "s@far.test", "sales@example.test", "Postmaster@example.org",
                           "postmaster+x@example.test", '"odd name"@example.test', "mixed@example.test",
                           "nobody@example.test", "carol@example.test", "nobody@far.test", "postmaster",
                           "daemon@example.test")
        assert [r[0] for r in replies[:5]] == [250] * 5
        assert replies[5] == NO_MAILBOX
        assert replies[6] == NO_MAILBOX, "alias targets are not names"
        assert replies[7] == (550, "5.7.1 Relaying denied (#5.7.1)")
        assert replies[8][0] == 250
        assert replies[9] == NO_MAILBOX, "system users only with `users 1`"
        path.write_text(ETC_ALIASES + "nobody: alice\n")
        assert c.cmd("RCPT TO:<nobody@example.test>")[0] == 250, "the file is re-read when it changes"
    assert f"{path}:8: no 'name:' at the start; line skipped" in c.stderr


def test_check_alias_arguments(server, tmp_path):
    path = tmp_path / "aliases"
    path.write_text("sales: alice\n")
    srv = server(f"check_alias file {path} users 1 domains example.org detail_sep -+")
    with srv.session() as c:
        c.ehlo()
        replies = envelope(c, "s@far.test", "daemon@example.org", "sales-2024@example.org",
                           "nosuchperson@example.test", "nosuchperson@example.org")
        assert [r[0] for r in replies] == [250, 250, 250, 550]
    srv.set_plugins([f"check_alias file {tmp_path}/missing", "rcpt_ok", "queue/maildir {maildir}"])
    with srv.session() as c:
        c.ehlo()
        assert envelope(c, "s@far.test", "nobody@example.test")[0][0] == 250, "fail open"
    assert "missing; not checking" in c.stderr
