"""whitelist / whitelist_soft: whitelisted clients pass a policy plugin (t_policy)
that refuses everyone else; whitelisting never grants relaying."""

import pytest

from harness import PLUGIN_DIRS, mail_server_config


STRANGER = {"TCPREMOTEIP": "192.0.2.99"}
HOSTS = """# whitelisted clients
192.0.2.10
10.1
172.16.0.0/12
2001:db8:5::/48
not-an-ip
300.1.
"""


def server(make_config, plugins, **files):
    base = {"loglevel": "6", "whitelisthosts": HOSTS, "whitelisthelo": "Trusted.Example.org",
            "whitelistsenders": "boss@partner.test\n@friends.test\nfamily.test",
            "whitelistrcpt": "postmaster@example.test\nabuse@EXAMPLE.test"}
    base.update(files)
    return mail_server_config(make_config, *plugins, files=base)


def mail_and_rcpt(srv, ip="192.0.2.99", sender="x@stranger.test", rcpt="u@example.test",
                  helo="client.example.org", env=None):
    """(MAIL code, RCPT code, stderr) of one transaction from `ip`."""
    env = dict(env or {}, TCPREMOTEIP=ip)
    with srv.session(env=env) as c:
        assert c.code == 220, c.text
        assert c.cmd(f"EHLO {helo}")[0] == 250
        mail = c.cmd(f"MAIL FROM:<{sender}>")[0]
        rcpt_code = c.cmd(f"RCPT TO:<{rcpt}>")[0] if mail == 250 else None
    return mail, rcpt_code, c.stderr


@pytest.mark.parametrize("name", ["whitelist", "whitelist_soft"])
@pytest.mark.parametrize("ip, immune", [
    ("192.0.2.10", True), ("10.1.200.3", True), ("10.10.0.1", False),
    ("172.20.1.1", True), ("172.32.0.1", False), ("2001:db8:5:1::9", True),
    ("2001:db8:6::9", False), ("192.0.2.99", False),
])
def test_whitelisted_hosts_pass_policy_plugins(make_config, name, ip, immune):
    srv = server(make_config, [name, "t_policy connect mail rcpt"])
    with srv.session(env={"TCPREMOTEIP": ip}) as c:
        if not immune:
            assert (c.code, c.text) == (550, "t_policy refused at connect")
            return
        assert c.code == 220
        code, text = c.send_message("x@stranger.test", ["u@example.test"], "Subject: hi\n\nbody")
        assert code == 250, text
    assert f"pass, host {ip} is a whitelisted host" in c.stderr


def test_malformed_host_lines_are_logged_and_skipped(make_config):
    srv = server(make_config, ["whitelist"])
    _, _, err = mail_and_rcpt(srv, ip="192.0.2.10")
    assert "whitelisthosts:6: whitelisthosts: 'not-an-ip' is no IP" in err
    assert "whitelisthosts:7: whitelisthosts: '300.1.' is no IP" in err


def test_whitelistclient_environment(make_config):
    srv = server(make_config, ["whitelist", "t_policy mail rcpt"], whitelisthosts="")
    assert mail_and_rcpt(srv, env={"WHITELISTCLIENT": ""})[:2] == (250, 250)
    assert mail_and_rcpt(srv)[:2] == (550, None)


def test_host_and_sender_matches_do_not_accept_recipients(make_config):
    # t_return stands in for the final rcpt plugin: only whitelistrcpt answers OK itself
    srv = make_config(plugins=["whitelist", "t_return rcpt DENY last plugin"],
                      files={"plugin_dirs": PLUGIN_DIRS, "whitelisthosts": "192.0.2.10",
                             "whitelistsenders": "partner.test",
                             "whitelistrcpt": "postmaster@example.test"})
    assert mail_and_rcpt(srv, ip="192.0.2.10", sender="a@partner.test")[1] == 550
    assert mail_and_rcpt(srv, rcpt="postmaster@example.test")[1] == 250


def test_whitelisted_helo_skips_later_helo_plugins_only(make_config):
    srv = server(make_config, ["whitelist", "t_policy helo ehlo mail"])
    with srv.session(env=STRANGER) as c:
        assert c.cmd("EHLO trusted.example.ORG")[0] == 250
        assert c.cmd("MAIL FROM:<x@stranger.test>")[0] == 550     # HELO is no credential
    with srv.session(env=STRANGER) as c:
        assert c.cmd("EHLO other.example.org") == (550, "t_policy refused at ehlo")


@pytest.mark.parametrize("sender, immune", [
    ("boss@partner.test", True), ("BOSS@Partner.test", True), ("clerk@partner.test", False),
    ("anyone@friends.test", True), ("kid@family.test", True), ("x@stranger.test", False),
    ("", False),
])
def test_whitelisted_senders(make_config, sender, immune):
    srv = server(make_config, ["whitelist", "t_policy rcpt data"])
    mail, rcpt, _ = mail_and_rcpt(srv, sender=sender)
    assert mail == 250
    assert rcpt == (250 if immune else 550)


def test_sender_whitelisting_lasts_one_transaction(make_config):
    srv = server(make_config, ["whitelist", "t_policy rcpt"])
    with srv.session(env=STRANGER) as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<boss@partner.test>")[0] == 250
        assert c.cmd("RCPT TO:<u@example.test>")[0] == 250
        assert c.cmd("RSET")[0] == 250
        assert c.cmd("MAIL FROM:<x@stranger.test>")[0] == 250
        assert c.cmd("RCPT TO:<u@example.test>")[0] == 550


def test_whitelisted_recipients_are_accepted(make_config):
    srv = server(make_config, ["whitelist", "t_policy rcpt"])
    assert mail_and_rcpt(srv, rcpt="postmaster@example.test")[1] == 250
    assert mail_and_rcpt(srv, rcpt="Abuse@example.TEST")[1] == 250
    assert mail_and_rcpt(srv, rcpt="u@example.test")[1] == 550


def test_per_recipient_defers_everything_to_rcpt(make_config):
    srv = server(make_config, ["whitelist per_recipient 1", "t_policy mail rcpt"])
    # nothing happens before RCPT, so the MAIL policy still refuses a whitelisted host
    assert mail_and_rcpt(srv, ip="192.0.2.10")[0] == 550
    srv = server(make_config, ["whitelist per_recipient 1", "t_policy rcpt"])
    assert mail_and_rcpt(srv, ip="192.0.2.10")[1] == 250
    assert mail_and_rcpt(srv, sender="boss@partner.test")[1] == 250
    assert mail_and_rcpt(srv)[1] == 550


def test_per_recipient_lists_from_user_config(make_config, tmp_path):
    users = tmp_path / "users"
    (users / "alice@example.test").mkdir(parents=True)
    (users / "alice@example.test" / "whitelistsenders").write_text("pal@stranger.test\n")
    lines = [f"t_user_config {users}", "whitelist per_recipient 1"]
    srv = server(make_config, lines + ["t_policy rcpt"])
    assert mail_and_rcpt(srv, sender="pal@stranger.test", rcpt="alice@example.test")[1] == 250
    assert mail_and_rcpt(srv, sender="pal@stranger.test", rcpt="bob@example.test")[1] == 550
    assert mail_and_rcpt(srv, sender="boss@partner.test", rcpt="alice@example.test")[1] == 250
    # merge 0: alice's own list replaces the global one
    srv = server(make_config, [f"t_user_config {users}", "whitelist per_recipient 1 merge 0",
                               "t_policy rcpt"])
    assert mail_and_rcpt(srv, sender="boss@partner.test", rcpt="alice@example.test")[1] == 550
    assert mail_and_rcpt(srv, sender="boss@partner.test", rcpt="bob@example.test")[1] == 250


def test_a_recipients_own_whitelist_does_not_exempt_other_recipients(make_config, tmp_path):
    users = tmp_path / "users"
    (users / "alice@example.test").mkdir(parents=True)
    (users / "alice@example.test" / "whitelistsenders").write_text("pal@stranger.test\n")
    srv = server(make_config, [f"t_user_config {users}", "whitelist per_recipient 1",
                               "t_policy rcpt"])
    with srv.session(env=STRANGER) as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<pal@stranger.test>")[0] == 250
        assert c.cmd("RCPT TO:<alice@example.test>")[0] == 250
        assert c.cmd("RCPT TO:<bob@example.test>")[0] == 550


def test_a_recipients_own_whitelist_counts_at_data_only_for_all_recipients(make_config, tmp_path):
    users = tmp_path / "users"
    (users / "alice@example.test").mkdir(parents=True)
    (users / "alice@example.test" / "whitelistsenders").write_text("pal@stranger.test\n")
    srv = server(make_config, [f"t_user_config {users}", "whitelist per_recipient 1",
                               "t_policy rcpt data"])
    with srv.session(env=STRANGER) as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<pal@stranger.test>")[0] == 250
        assert c.cmd("RCPT TO:<alice@example.test>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send("Subject: x\r\n\r\nhi\r\n.\r\n")
        assert c.read_reply()[0] == 250
        assert c.cmd("MAIL FROM:<pal@stranger.test>")[0] == 250
        assert c.cmd("RCPT TO:<alice@example.test>")[0] == 250
        assert c.cmd("RCPT TO:<postmaster@example.test>")[0] == 250     # whitelistrcpt
        assert c.cmd("DATA") == (554, "5.7.1 t_policy refused at data")


@pytest.mark.parametrize("name", ["whitelist", "whitelist_soft"])
def test_whitelisted_host_and_sender_still_cannot_relay(make_config, name):
    """The manual's promise: whitelisting exempts from policy, never opens the relay."""
    srv = server(make_config, [name, "t_policy mail"])
    for ip, sender in (("192.0.2.10", "x@stranger.test"), ("192.0.2.99", "boss@partner.test")):
        with srv.session(env={"TCPREMOTEIP": ip}) as c:
            c.ehlo()
            assert c.cmd(f"MAIL FROM:<{sender}>")[0] == 250, "exempt from t_policy"
            assert c.cmd("RCPT TO:<victim@elsewhere.test>") == (550, "5.7.1 Relaying denied (#5.7.1)")
            assert c.cmd("RCPT TO:<u@example.test>")[0] == 250
