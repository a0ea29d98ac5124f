"""majordomo: restrict_post from real Majordomo list files."""

import pytest

from harness import mail_server_config

REFUSED = "5.7.1 Sorry, only members may post to {} (#5.7.1)"


@pytest.fixture
def lists(tmp_path):
    d = tmp_path / "lists"
    d.mkdir()
    (d / "team.config").write_text(
        "# Majordomo list config\n"
        "description = the team\n"
        "message_footer << END\n"
        "restrict_post = nobody-at-all\n"
        "END\n"
        "restrict_post   =   team:team-posters\n")
    (d / "team").write_text("Alice Example <Alice@Example.test>\nbob@example.test (Bob)\n# old: carol@x.test\n")
    (d / "team-posters").write_text("boss@partner.test\n")
    (d / "open.config").write_text("description = anyone may post\n")
    (d / "open").write_text("alice@example.test\n")
    (d / "broken.config").write_text("restrict_post = broken-missing\n")
    (d / "sneaky.config").write_text("restrict_post = ../../etc/passwd\n")
    return d


def server(make_config, args, extra=()):
    return mail_server_config(make_config, *extra, f"majordomo {args}",
                              files={"rcpthosts": "example.test\nlists.example.test", "loglevel": "6"})


def post(srv, sender, rcpt, body=None):
    """RCPT reply, or the final reply when body is given and RCPT passed."""
    with srv.session() as c:
        c.ehlo()
        assert c.cmd(f"MAIL FROM:<{sender}>")[0] == 250
        reply = c.cmd(f"RCPT TO:<{rcpt}>")
        if body is None or reply[0] != 250:
            return reply
        assert c.cmd("DATA")[0] == 354
        c.send(body.replace("\n", "\r\n") + "\r\n.\r\n")
        c.read_reply()
        return c.code, c.text


@pytest.mark.parametrize("sender, ok", [
    ("alice@example.test", True), ("ALICE@example.TEST", True), ("bob@example.test", True),
    ("boss@partner.test", True), ("carol@x.test", False), ("", False),
])
def test_restrict_post_on_the_envelope_sender(make_config, lists, sender, ok):
    srv = server(make_config, f"lists_dir {lists}")
    code, text = post(srv, sender, "team@lists.example.test")
    assert (code, text) == ((250, "2.1.5 <team@lists.example.test>, recipient ok") if ok
                            else (550, REFUSED.format("team@lists.example.test")))


def test_open_lists_and_other_addresses_are_not_restricted(make_config, lists):
    srv = server(make_config, f"lists_dir {lists}")
    assert post(srv, "carol@x.test", "open@lists.example.test")[0] == 250
    assert post(srv, "carol@x.test", "someone@example.test")[0] == 250
    assert post(srv, "carol@x.test", "team-request@lists.example.test")[0] == 250


def test_domains_argument(make_config, lists):
    srv = server(make_config, f"lists_dir {lists} domains lists.example.test")
    assert post(srv, "carol@x.test", "team@example.test")[0] == 250
    assert post(srv, "carol@x.test", "team@lists.example.test")[0] == 550


def test_foreign_domains_hold_no_lists(make_config, lists):
    srv = server(make_config, f"lists_dir {lists}", extra=["relay"])
    with srv.session(env={"RELAYCLIENT": ""}) as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<carol@x.test>")[0] == 250
        assert c.cmd("RCPT TO:<team@elsewhere.test>")[0] == 250


def test_broken_list_config_is_a_logged_temporary_failure(make_config, lists):
    srv = server(make_config, f"lists_dir {lists}")
    with srv.session() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<alice@example.test>")
        assert c.cmd("RCPT TO:<broken@lists.example.test>")[0] == 450
        assert c.cmd("RCPT TO:<sneaky@lists.example.test>")[0] == 450
    assert "broken-missing: No such file or directory" in c.stderr
    assert "'../../etc/passwd' is not a plain file name" in c.stderr


def test_list_files_are_reread_when_they_change(make_config, lists):
    srv = server(make_config, f"lists_dir {lists}")
    assert post(srv, "carol@x.test", "team@lists.example.test")[0] == 550
    with open(lists / "team-posters", "a") as fh:
        fh.write("carol@x.test\n")
    assert post(srv, "carol@x.test", "team@lists.example.test")[0] == 250


def test_check_header_uses_the_from_header(make_config, lists):
    srv = server(make_config, f"lists_dir {lists} check_envelope 0 check_header 1")
    body = "From: Alice <alice@example.test>\nSubject: hi\n\nbody"
    assert post(srv, "bounces@mailer.test", "team@lists.example.test", body)[0] == 250
    body = "From: Mallory <mallory@evil.test>\nSubject: hi\n\nbody"
    code, text = post(srv, "alice@example.test", "team@lists.example.test", body)
    assert (code, text) == (552, REFUSED.format("team@lists.example.test"))
    assert len(srv.messages()) == 1


def test_list_path_from_a_recipient_note(make_config, lists):
    srv = server(make_config, "check_envelope 1",
                 extra=[f"t_rcpt_note majordomo_list {lists}/{{{{user}}}}"])
    assert post(srv, "carol@x.test", "team@example.test")[0] == 550
    assert post(srv, "bob@example.test", "team@example.test")[0] == 250


def test_bad_lists_dir_stops_start_up(make_config, tmp_path):
    c = server(make_config, f"lists_dir {tmp_path}/nope").session(read_greeting=False)
    assert c.closed()
    assert "no such directory" in c.stderr and c.proc.returncode == 78
