"""rcpt_ok: local domains accepted, relaying refused, relay tricks refused to
clients that may not relay (and allowed to those that may)."""

import pytest

TRICKS = ["<user%other.test@example.test>", '<"user@other.test"@example.test>',
          "<other.test!user@example.test>", "<@example.test:user@example.test>"]


@pytest.fixture
def srv(make_config):
    return make_config(plugins=["relay", "rcpt_ok", "queue/maildir {maildir}"],
                       files={"rcpthosts": ["example.test", ".sub.test"],
                              "morercpthosts": ""})


def rcpt(srv, address, env=None):
    with srv.session(env=env) as c:
        c.cmd("HELO client.test")
        assert c.cmd("MAIL FROM:<a@b.test>")[0] == 250
        return c.cmd(f"RCPT TO:{address}")


@pytest.mark.parametrize("address", ["<u@example.test>", "<u@mx.example.test>", "<u@localhost>",
                                     "<u@deep.sub.test>", "<postmaster>", "<U@EXAMPLE.TEST>"])
def test_local_recipients_accepted(srv, address):
    code, text = rcpt(srv, address)
    assert code == 250 and text.endswith(", recipient ok"), text


@pytest.mark.parametrize("address", ["<u@other.test>", "<u@sub.test>", "<u@example.test.evil>"])
def test_foreign_recipients_refused(srv, address):
    assert rcpt(srv, address) == (550, "Relaying denied (#5.7.1)")


@pytest.mark.parametrize("address", TRICKS)
def test_relay_tricks_refused_for_outsiders(srv, address):
    assert rcpt(srv, address) == (550, "Relaying denied (#5.7.1)")


@pytest.mark.parametrize("address", TRICKS + ["<u@other.test>"])
def test_relay_clients_may_use_any_address(srv, address):
    code, text = rcpt(srv, address, env={"RELAYCLIENT": ""})
    assert code == 250, text


def test_relayclients_cidr_and_ipv6(srv):
    srv.write("relayclients", ["10.0.0.0/8", "2001:db8::/32", "192.168."])
    for ip in ("10.1.2.3", "2001:db8::7", "192.168.4.4"):
        assert rcpt(srv, "<u@other.test>", env={"TCPREMOTEIP": ip})[0] == 250, ip
    assert rcpt(srv, "<u@other.test>", env={"TCPREMOTEIP": "11.1.2.3"})[0] == 550


def test_morercpthosts_cdb(srv, tmp_path):
    import subprocess
    subprocess.run(["cdb", "-c", "-m", srv.dir + "/morercpthosts.cdb"], input=b"more.test 1\n", check=True)
    assert rcpt(srv, "<u@more.test>")[0] == 250


def test_whitelisted_sender_cannot_relay(srv):
    """A whitelist exempts from policy, it never opens the relay (forged senders)."""
    srv.set_plugins(["whitelist", "relay", "rcpt_ok", "queue/maildir {maildir}"])
    srv.write("whitelistsenders", "friend@partner.test")
    srv.write("whitelisthosts", "192.0.2.99")
    with srv.session() as c:
        c.cmd("HELO client.test")
        assert c.cmd("MAIL FROM:<friend@partner.test>")[0] == 250
        assert c.cmd("RCPT TO:<victim@other.test>") == (550, "Relaying denied (#5.7.1)")
    assert rcpt(srv, "<victim@other.test>", env={"TCPREMOTEIP": "192.0.2.99"})[0] == 550
