"""Envelope policy lists (issue 5, part A): badmailfrom, badmailfromto, badrcptto,
check_badrcptto_patterns, check_verybadrcptto, check_goodrcptto, rcpt_regexp,
bounce_rcpt_regexp and rcpt_map, each spoken to over real SMTP sessions."""

import os
import time

import pytest

RCPTHOSTS = "example.test\nopen.test\nold.example.test"


@pytest.fixture
def policy(mail_config):
    """policy(plugin_line, files) -> ConfigDir with the plugin before rcpt_ok."""
    def make(*lines, files=None):
        return mail_config(*lines, files={"rcpthosts": RCPTHOSTS, "loglevel": "6", **(files or {})})
    return make


def envelope(c, sender, *rcpts):
    """MAIL (must succeed), then each RCPT; returns [(code, text)] of the RCPTs."""
    code, text = c.cmd(f"MAIL FROM:<{sender}>")
    assert code == 250, text
    return [c.cmd(f"RCPT TO:<{r}>") for r in rcpts]


def send_data(c, body="Subject: t\n\nhello"):
    code, text = c.cmd("DATA")
    if code != 354:
        return code, text
    c.send("".join(line + "\r\n" for line in body.split("\n")) + ".\r\n")
    return c.read_reply()[0], c.text


# -- badmailfrom ------------------------------------------------------------------------------

BADMAILFROM = """# senders we refuse
spammer@bad.test
@junk.test we hate junk
^bounce-.*@lists\\.test$ no VERP bounces
noatsign
^(unclosed[ broken
"""


@pytest.mark.parametrize("name", ["badmailfrom", "check_badmailfrom"])
def test_badmailfrom_refuses_every_rcpt(policy, name):
    srv = policy(name, files={"badmailfrom": BADMAILFROM})
    with srv.session() as c:
        c.ehlo()
        code, text = c.cmd("MAIL FROM:<Spammer@BAD.test>")
        assert code == 250, "MAIL itself is accepted; the refusal comes at RCPT"
        for rcpt in ("a@example.test", "b@example.test"):
            assert c.cmd(f"RCPT TO:<{rcpt}>") == (
                550, "5.7.1 sorry, your envelope sender is in my badmailfrom list")
        assert send_data(c)[0] == 503
        assert envelope(c, "x@JUNK.test", "a@example.test") == [(550, "5.7.1 we hate junk")]
        assert envelope(c, "bounce-77@lists.test", "a@example.test")[0] == (550, "5.7.1 no VERP bounces")
        assert envelope(c, "spammer@good.test", "a@example.test")[0][0] == 250
        assert envelope(c, "", "a@example.test")[0][0] == 250, "the null sender is never checked"
    log = c.stderr
    config = os.path.join(srv.dir, "badmailfrom")
    assert f"{config}:5: badmailfrom: no @ sign in 'noatsign'; line skipped" in log
    assert f"{config}:6: badmailfrom: bad regular expression" in log


def test_badmailfrom_negated_regex_and_clean_transactions(policy):
    srv = policy("badmailfrom", files={"badmailfrom": "!/@friends\\.test$/ strangers go away"})
    with srv.session() as c:
        c.ehlo()
        assert envelope(c, "anyone@else.test", "a@example.test") == [(550, "5.7.1 strangers go away")]
        assert envelope(c, "pal@FRIENDS.test", "a@example.test")[0][0] == 250
        code, _ = send_data(c)
        assert code == 250
    assert len(srv.messages()) == 1


@pytest.mark.parametrize("args, expect, logged", [
    ("reject 0", 250, "fail, tolerated"),
    ("reject naughty", 250, "fail, NAUGHTY"),
    ("reject_type temp", 450, "fail"),
    ("reject_type disconnect", 550, "fail"),
])
def test_badmailfrom_reject_arguments(policy, args, expect, logged):
    srv = policy(f"badmailfrom {args}", files={"badmailfrom": "@bad.test"})
    with srv.session() as c:
        c.ehlo()
        (reply,) = envelope(c, "x@bad.test", "a@example.test")
        assert reply[0] == expect
        if args.endswith("disconnect"):
            assert c.closed()
    assert logged in c.stderr


def test_badmailfrom_skips_relay_clients(policy):
    srv = policy("relay", "badmailfrom", files={"badmailfrom": "@bad.test", "relayclients": "192.0.2."})
    with srv.session() as c:
        c.ehlo()
        assert envelope(c, "x@bad.test", "a@example.test")[0][0] == 250


# -- badmailfromto -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["badmailfromto", "check_badmailfromto"])
def test_badmailfromto_pairs(policy, name):
    pairs = "stalker@evil.test\talice@example.test\n@harass.test\tbob@example.test\nlonely@x.test\n"
    srv = policy(name, files={"badmailfromto": pairs})
    with srv.session() as c:
        c.ehlo()
        replies = envelope(c, "Stalker@evil.test", "ALICE@example.test", "bob@example.test")
        assert replies[0] == (550, "5.7.1 mail to alice@example.test not accepted here")
        assert replies[1][0] == 250
        replies = envelope(c, "x@harass.test", "alice@example.test", "Bob@Example.test")
        assert replies[0][0] == 250
        assert replies[1] == (550, "5.7.1 mail to bob@example.test not accepted here")
        assert envelope(c, "friend@good.test", "alice@example.test")[0][0] == 250
        assert envelope(c, "", "alice@example.test")[0][0] == 250
    assert f"{os.path.join(srv.dir, 'badmailfromto')}:3: badmailfromto: no recipient" in c.stderr


# -- badrcptto ---------------------------------------------------------------------------------

BADRCPTTO = """closed@example.test
@old.example.test
^(root|daemon)@
special@example.test this mailbox is gone for good
^[broken
"""


@pytest.mark.parametrize("name", ["badrcptto", "check_badrcptto"])
def test_badrcptto(policy, name):
    srv = policy(name, files={"badrcptto": BADRCPTTO})
    with srv.session() as c:
        c.ehlo()
        replies = envelope(c, "s@sender.test", "good@example.test", "Closed@Example.test",
                           "any@OLD.example.test", "root@example.test", "special@example.test",
                           "other@example.test")
        assert replies[0][0] == 250
        assert replies[1] == (550, "5.1.1 mail to closed@example.test not accepted here (#5.1.1)")
        assert replies[2] == (550, "5.1.1 mail to @old.example.test not accepted here (#5.1.1)")
        assert replies[3] == (550, "5.1.1 mail to root@example.test not accepted here (#5.1.1)")
        assert replies[4] == (550, "5.7.1 this mailbox is gone for good")
        assert replies[5][0] == 250
        assert send_data(c)[0] == 250
    (msg,) = srv.messages()
    assert b"Delivered-To: good@example.test\nDelivered-To: other@example.test\n" in msg
    assert f"{os.path.join(srv.dir, 'badrcptto')}:5: badrcptto: bad regular expression" in c.stderr


def test_badrcptto_applies_to_relay_clients(policy):
    srv = policy("relay", "badrcptto", files={"badrcptto": "closed@example.test",
                                              "relayclients": "192.0.2.10"})
    with srv.session() as c:
        c.ehlo()
        assert envelope(c, "s@sender.test", "closed@example.test")[0][0] == 550
        assert envelope(c, "s@sender.test", "anyone@far.away.test")[0][0] == 250


def test_badrcptto_patterns(policy):
    patterns = "%.*@ Sorry, no percent hacks here\n@.*@\n!/@(example|open)\\.test$/ only our domains\n(bad\n"
    srv = policy("check_badrcptto_patterns", files={"badrcptto_patterns": patterns})
    with srv.session() as c:
        c.ehlo()
        replies = envelope(c, "s@sender.test", "a%b@example.test", '"a@b"@example.test',
                           "x@else.test", "fine@OPEN.test")
        assert replies[0] == (550, "5.7.1 Sorry, no percent hacks here")
        assert replies[1] == (550, "5.7.1 relaying denied")
        assert replies[2] == (550, "5.7.1 only our domains")
        assert replies[3][0] == 250
    assert f"{os.path.join(srv.dir, 'badrcptto_patterns')}:4: badrcptto_patterns: bad regular" in c.stderr


def test_badrcptto_patterns_skip_relay_clients(policy):
    srv = policy("relay", "check_badrcptto_patterns",
                 files={"badrcptto_patterns": "%", "relayclients": "192.0.2.10"})
    with srv.session() as c:
        c.ehlo()
        assert envelope(c, "s@sender.test", "a%b@example.test")[0][0] == 250


# -- lines qpsmtpd treats as patterns (issue 8 point 5) -------------------------------------------

# qpsmtpd's config.sample/badrcptto_patterns, unchanged; qpsmtpd's badrcptto takes the same lines
UPSTREAM_PATTERNS = """# Format is pattern\\s+Response
# Don't forget to anchor the pattern if required
!       Sorry, bang paths not accepted here
@.*@    Sorry, multiple at signs not accepted here
%       Sorry, percent hack not accepted here 
"""


@pytest.mark.parametrize("plugin, file", [("badrcptto", "badrcptto"),
                                          ("check_badrcptto", "badrcptto"),
                                          ("check_badrcptto_patterns", "badrcptto_patterns")])
def test_upstream_bang_path_and_percent_hack_lines(policy, plugin, file):
    srv = policy(plugin, files={file: UPSTREAM_PATTERNS})
    with srv.session() as c:
        c.ehlo()
        replies = envelope(c, "s@sender.test", "other.test!user@example.test",
                           "user%other.test@example.test", '"a@b"@example.test', "user@example.test")
        assert replies[0] == (550, "5.7.1 Sorry, bang paths not accepted here")
        assert replies[1] == (550, "5.7.1 Sorry, percent hack not accepted here")
        assert replies[2] == (550, "5.7.1 Sorry, multiple at signs not accepted here")
        assert replies[3][0] == 250
    assert "line skipped" not in c.stderr


@pytest.mark.parametrize("name", ["badmailfrom", "check_badmailfrom"])
def test_badmailfrom_upstream_pattern_lines(policy, name):
    lines = "!\n%  no percent hacks\n^[0-9]+@numbers\\.test$\nspam+list@bulk.test\n"
    srv = policy(name, files={"badmailfrom": lines})
    with srv.session() as c:
        c.ehlo()
        refused = (550, "5.7.1 sorry, your envelope sender is in my badmailfrom list")
        assert envelope(c, "relay!user@bang.test", "a@example.test") == [refused]
        assert envelope(c, "a%b@percent.test", "a@example.test") == [(550, "5.7.1 no percent hacks")]
        assert envelope(c, "12345@numbers.test", "a@example.test") == [refused]
        # '+' makes a pattern for qpsmtpd (it matches spamlist@, spammlist@ ...); the address
        # as written is refused too
        assert envelope(c, "spam+list@bulk.test", "a@example.test") == [refused]
        assert envelope(c, "spamlist@bulk.test", "a@example.test") == [refused]
        assert envelope(c, "spam@bulk.test", "a@example.test")[0][0] == 250
        assert envelope(c, "plain@sender.test", "a@example.test")[0][0] == 250
    assert "line skipped" not in c.stderr


def test_badrcptto_plus_and_bracket_lines(policy):
    """'+' makes a pattern (as in qpsmtpd) that also matches the address as written;
    [ ] alone does not (as in qpsmtpd): @[192.0.2.1] is a domain, not a character class."""
    srv = policy("badrcptto", files={"badrcptto": "closed+tag@example.test\n@[192.0.2.1]\n"})
    with srv.session() as c:
        c.ehlo()
        replies = envelope(c, "s@sender.test", "closed+tag@example.test", "closedtag@example.test",
                           "closed@example.test", "u@[192.0.2.1]", "u@0pen.test")
        assert replies[0] == (550, "5.1.1 mail to closed+tag@example.test not accepted here (#5.1.1)")
        assert replies[1] == (550, "5.1.1 mail to closedtag@example.test not accepted here (#5.1.1)")
        assert replies[2][0] == 250
        assert replies[3] == (550, "5.1.1 mail to @[192.0.2.1] not accepted here (#5.1.1)")
        assert replies[4] == (550, "5.7.1 Relaying denied (#5.7.1)"), "rcpt_ok's answer, not ours"


# -- check_verybadrcptto --------------------------------------------------------------------------

def test_verybadrcptto_poisons_the_transaction(policy):
    srv = policy("check_verybadrcptto", files={"verybadrcptto": "trap@example.test\n@traps.test"})
    with srv.session() as c:
        c.ehlo()
        replies = envelope(c, "s@sender.test", "good@example.test", "TRAP@example.test",
                           "good2@example.test")
        assert replies[0][0] == 250
        assert replies[1] == (550, "5.1.1 mail to trap@example.test not accepted here (#5.1.1)")
        assert replies[2] == (550, "5.7.1 Transaction refused: it was addressed to a forbidden recipient")
        assert send_data(c) == (554, "5.7.1 Transaction refused: it was addressed to a forbidden recipient")
        # a new transaction is clean again
        assert envelope(c, "s@sender.test", "good@example.test")[0][0] == 250
        assert send_data(c)[0] == 250
        assert c.cmd("RSET")[0] == 250
        assert envelope(c, "s@sender.test", "x@traps.test")[0][0] == 550
        assert c.cmd("RSET")[0] == 250
        assert envelope(c, "s@sender.test", "good@example.test")[0][0] == 250
    assert len(srv.messages()) == 1


def test_verybadrcptto_disconnect(policy):
    srv = policy("check_verybadrcptto reject_type disconnect", files={"verybadrcptto": "trap@example.test"})
    with srv.session() as c:
        c.ehlo()
        assert envelope(c, "s@sender.test", "trap@example.test")[0][0] == 550
        assert c.closed()


# -- check_goodrcptto ---------------------------------------------------------------------------

GOODRCPTTO = "alice@example.test\n@open.test\npostmaster\n/^sales-\\d+@example\\.test$/\n/(/\n"


def test_goodrcptto(policy):
    srv = policy("check_goodrcptto extn -+", files={"goodrcptto": GOODRCPTTO})
    with srv.session() as c:
        c.ehlo()
        replies = envelope(c, "s@sender.test", "Alice@example.test", "alice-lists@example.test",
                           "alice+tag@example.test", "anyone@open.test", "postmaster@old.example.test",
                           "sales-12@example.test", "bob@example.test", "alicex@example.test")
        assert [r[0] for r in replies] == [250] * 6 + [550, 550]
        assert replies[6] == (550, "5.7.1 Local policy rejects this mail")
    log = c.stderr
    assert "fail, recipient bob@example.test denied (_check_goodrcptto=1)" in log
    assert f"{os.path.join(srv.dir, 'goodrcptto')}:5: goodrcptto: bad regular expression" in log


def test_goodrcptto_without_extn_and_limit(policy):
    srv = policy("check_goodrcptto deny_note bad_rcpts=1 limit 2", files={"goodrcptto": GOODRCPTTO})
    with srv.session() as c:
        c.ehlo()
        replies = envelope(c, "s@sender.test", "alice-lists@example.test", "alice@example.test")
        assert [r[0] for r in replies] == [550, 250]
        code, _ = c.cmd("RCPT TO:<nobody@example.test>")
        assert code == 550
        assert c.closed(), "the second bad recipient reaches the limit"
    assert "bad_rcpts=2" in c.stderr


def test_goodrcptto_skips_relay_clients(policy):
    srv = policy("relay", "check_goodrcptto",
                 files={"goodrcptto": GOODRCPTTO, "relayclients": "192.0.2.10"})
    with srv.session() as c:
        c.ehlo()
        assert envelope(c, "s@sender.test", "stranger@far.test")[0][0] == 250


def test_goodrcptto_bad_arguments_stop_startup(policy):
    srv = policy("check_goodrcptto limit many", files={"goodrcptto": GOODRCPTTO})
    c = srv.session(read_greeting=False)
    with pytest.raises(EOFError):
        c.read_reply()
    assert "check_goodrcptto: limit 'many': expected an integer >= 0" in c.stderr


# -- rcpt_regexp / bounce_rcpt_regexp ---------------------------------------------------------------

RCPT_REGEXP = """# rcpt_regexp - config for rcpt_regexp plugin
me@example.test           OK       Accepting mail
/^user\\d+@example\\.test$/ OK       Accepting mail
info@example.test         DENY     User not found.
/^unused@.*/              DENY     User not found.
/^later@/                 DENYSOFT Try again later
/^silent@/                DENY
/^drop@/                  DENY_DISCONNECT Go away
/^nocode@/
/^bad@/                   MAYBE    what?
/^done@/                  DONE
/^(broken@/               DENY     never
/^.*$/                    DECLINED Fall through to next rcpt plugin
"""


def test_rcpt_regexp(policy):
    srv = policy("rcpt_regexp", files={"rcpt_regexp": RCPT_REGEXP})
    with srv.session() as c:
        c.ehlo()
        replies = envelope(c, "s@sender.test", "ME@example.test", "user42@Example.Test",
                           "info@example.test", "unused@anywhere.test", "later@example.test",
                           "silent@example.test", "other@example.test", "other@far.test",
                           "nocode@example.test", "bad@example.test", "done@example.test")
        assert replies[0][0] == 250 and replies[1][0] == 250
        assert replies[2] == (550, "5.7.1 User not found.")
        assert replies[3] == (550, "5.7.1 User not found.")
        assert replies[4] == (450, "4.7.1 Try again later")
        assert replies[5] == (550, "5.7.1 relaying denied")
        assert replies[6][0] == 250, "DECLINED: rcpt_ok accepts our domain"
        assert replies[7] == (550, "5.7.1 Relaying denied (#5.7.1)")
        assert [r[0] for r in replies[8:]] == [250, 250, 250], "unusable lines are skipped"
        assert c.cmd("RCPT TO:<drop@example.test>") == (550, "5.7.1 Go away")
        assert c.closed()
    log = c.stderr
    path = os.path.join(srv.dir, "rcpt_regexp")
    assert f"{path}:9: rcpt_regexp: no return code; line skipped" in log
    assert f"{path}:10: rcpt_regexp: 'MAYBE' is not a valid return code" in log
    assert f"{path}:11: rcpt_regexp: DONE would leave the client without an answer" in log
    assert f"{path}:12: rcpt_regexp: bad regular expression" in log


def test_bounce_rcpt_regexp(policy):
    rules = ("/^noreply@/ DENY This address takes no bounces\nnews@example.test DENYSOFT later\n"
             "!/@(example|open)\\.test$/ DENY not one of ours\n")
    srv = policy("bounce_rcpt_regexp", files={"bounce_rcpt_regexp": rules})
    with srv.session() as c:
        c.ehlo()
        assert envelope(c, "", "noreply@example.test", "news@example.test", "a@example.test") == [
            (550, "5.7.1 This address takes no bounces"), (450, "4.7.1 later"),
            (250, "2.1.5 <a@example.test>, recipient ok")]
        assert envelope(c, "Mailer-Daemon@far.test", "noreply@example.test", "x@else.test") == [
            (550, "5.7.1 This address takes no bounces"), (550, "5.7.1 not one of ours")]
        assert envelope(c, "person@far.test", "noreply@example.test", "news@example.test") == [
            (250, "2.1.5 <noreply@example.test>, recipient ok"),
            (250, "2.1.5 <news@example.test>, recipient ok")]


# -- rcpt_map ---------------------------------------------------------------------------------------

MAP = """# example_test_map
me@example.test           OK
you@Example.test          OK
info@example.test         DENY     User not found.
quiet@example.test        DENY
later@example.test        DENYSOFT
stranger@other.test       OK
broken@example.test       PERHAPS  what?
"""


def test_rcpt_map(policy):
    srv = policy("rcpt_map domain Example.test file example_map default DENYSOFT=Try_again_later",
                 files={"example_map": MAP})
    with srv.session() as c:
        c.ehlo()
        replies = envelope(c, "s@sender.test", "ME@example.test", "you@EXAMPLE.TEST",
                           "info@example.test", "quiet@example.test", "later@example.test",
                           "unknown@example.test", "broken@example.test", "x@open.test",
                           "stranger@other.test")
        assert replies[0][0] == 250 and replies[1][0] == 250
        assert replies[2] == (550, "5.7.1 User not found.")
        assert replies[3] == (550, "5.7.1 No such user.")
        assert replies[4] == (450, "4.7.1 No such user.")
        assert replies[5] == (450, "4.7.1 Try again later")
        assert replies[6] == (450, "4.7.1 Try again later")
        assert replies[7][0] == 250, "another domain: rcpt_ok decides"
        assert replies[8] == (550, "5.7.1 Relaying denied (#5.7.1)")
    log = c.stderr
    path = os.path.join(srv.dir, "example_map")
    assert f"{path}:8: 'PERHAPS' is not a valid return code; line skipped" in log
    assert f"{path}:7: stranger@other.test is not in domain example.test; line skipped" in log


def test_rcpt_map_default_and_reload(policy):
    srv = policy("rcpt_map domain example.test file {dir}/map", files={"map": "me@example.test OK"})
    with srv.session() as c:
        c.ehlo()
        assert envelope(c, "s@sender.test", "me@example.test", "new@example.test") == [
            (250, "2.1.5 <me@example.test>, recipient ok"), (550, "5.7.1 No such user.")]
        time.sleep(0.01)
        srv.write("map", "me@example.test OK\nnew@example.test OK\n")
        assert c.cmd("RCPT TO:<new@example.test>")[0] == 250
        srv.write("map", "# emptied by mistake\n")
        assert c.cmd("RCPT TO:<new@example.test>")[0] == 250, "an empty map keeps the old one"
    assert "is empty; keeping the old map" in c.stderr


@pytest.mark.parametrize("args, message", [
    ("file map", "rcpt_map: missing argument domain NAME (the domain this instance answers for)"),
    ("domain example.test", "rcpt_map: missing argument file MAP"),
    ("domain example.test file nosuch", "cannot read map file"),
    ("domain example.test file empty", "Empty map file"),
    ("domain example.test file map default MAYBE", "Not a valid constant for 'default' arg"),
])
def test_rcpt_map_bad_arguments_stop_startup(policy, args, message):
    srv = policy(f"rcpt_map {args}", files={"map": "a@example.test OK", "empty": "# nothing"})
    c = srv.session(read_greeting=False)
    with pytest.raises(EOFError):
        c.read_reply()
    assert message in c.stderr and "config/plugins:1" in c.stderr
