"""spam_gourmet: disposable addresses with counters in the real LMDB store,
delivered through queue/maildir to the real user."""

import datetime

import pytest

from qpsmtpd_py.helpers.store import Store

from harness import PLUGIN_DIRS, mail_server_config

EXPIRED = (550, "5.1.1 Sorry, that address has expired. (#5.1.1)")


@pytest.fixture
def srv(make_config, tmp_path):
    return server(make_config, tmp_path)


def server(make_config, tmp_path, args=""):
    return mail_server_config(make_config, f"spam_gourmet {args}".strip(),
                              files={"rcpthosts": "example.test\nother.test",
                                     "store_dir": str(tmp_path / "store"), "loglevel": "6"})


def send(srv, rcpt, body="Subject: hi\n\nbody"):
    """(RCPT reply, final reply or None) of one message."""
    with srv.session() as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<shop@sender.test>")[0] == 250
        reply = c.cmd(f"RCPT TO:<{rcpt}>")
        if reply[0] != 250:
            return reply, None
        assert c.cmd("DATA")[0] == 354
        c.send(body.replace("\n", "\r\n") + "\r\n.\r\n")
        return reply, c.read_reply()[0]


def delivered_to(srv):
    return [m.split(b"\n")[1] for m in srv.messages()]


def test_count_limited_address_accepts_n_messages_then_refuses(srv):
    for _ in range(3):
        reply, final = send(srv, "Steve.Shop.3@example.test")
        assert reply == (250, "2.1.5 <Steve@example.test>, recipient ok") and final == 250
    assert send(srv, "steve.shop.3@example.test")[0] == EXPIRED
    assert delivered_to(srv) == [b"Delivered-To: Steve@example.test"] * 3


def test_count_and_number_in_either_order_share_the_counter(srv):
    assert send(srv, "steve.count.2@example.test")[1] == 250
    assert send(srv, "steve.2.count@example.test")[1] == 250
    assert send(srv, "steve.count.2@example.test")[0] == EXPIRED
    assert send(srv, "steve.news.1@example.test")[1] == 250     # another word: its own counter


def test_the_first_limit_is_kept(srv):
    assert send(srv, "steve.shop.1@example.test")[1] == 250
    assert send(srv, "steve.shop.500@example.test")[0] == EXPIRED


def test_aborted_transactions_use_nothing(srv):
    with srv.session() as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<shop@sender.test>")[0] == 250
        assert c.cmd("RCPT TO:<steve.shop.1@example.test>")[0] == 250
        assert c.cmd("RSET")[0] == 250
    assert send(srv, "steve.shop.1@example.test")[1] == 250
    assert send(srv, "steve.shop.1@example.test")[0] == EXPIRED


def test_date_limited_addresses(srv):
    today = datetime.date.today()
    yesterday = today - datetime.timedelta(days=1)
    assert send(srv, f"steve.until.{today:%Y%m%d}@example.test")[1] == 250
    assert send(srv, f"steve.{today:%Y-%m-%d}.until@example.test")[1] == 250
    assert send(srv, f"steve.until.{yesterday:%Y%m%d}@example.test")[0] == EXPIRED
    assert delivered_to(srv) == [b"Delivered-To: steve@example.test"] * 2


@pytest.mark.parametrize("rcpt", ["john.smith@example.test", "a.b.c@example.test",
                                  "steve.shop.10001@example.test", "steve.shop.0@example.test",
                                  "steve.2024.5@example.test", "steve.until.20251340@example.test"])
def test_ordinary_addresses_are_left_alone(srv, rcpt):
    reply, final = send(srv, rcpt)
    assert reply[0] == 250 and final == 250
    assert rcpt.split("@")[0].encode() in delivered_to(srv)[0]


def test_domains_argument(make_config, tmp_path):
    srv = server(make_config, tmp_path, "domains example.test")
    assert send(srv, "steve.shop.1@other.test")[1] == 250
    assert send(srv, "steve.shop.1@other.test")[1] == 250
    assert delivered_to(srv) == [b"Delivered-To: steve.shop.1@other.test"] * 2


def test_a_lost_race_for_the_last_use_is_a_temporary_failure(srv, tmp_path):
    with srv.session() as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<shop@sender.test>")[0] == 250
        assert c.cmd("RCPT TO:<steve.news.5@example.test>")[0] == 250     # counted first
        assert c.cmd("RCPT TO:<steve.shop.2@example.test>")[0] == 250
        # another message takes the last uses of steve.shop meanwhile
        Store(str(tmp_path / "store")).table("spam_gourmet").set("steve.shop@example.test", "2/2")
        assert c.cmd("DATA")[0] == 354
        c.send("Subject: x\r\n\r\nbody\r\n.\r\n")
        assert c.read_reply()[0] == 452
    table = Store(str(tmp_path / "store")).table("spam_gourmet")
    assert table.get("steve.news@example.test") == b"0/5"      # its use was given back
    assert srv.messages() == []


def test_an_unusable_store_stops_start_up(make_config, tmp_path):
    (tmp_path / "file").write_text("x")
    srv = make_config(plugins=["spam_gourmet", "rcpt_ok"],
                      files={"store_dir": str(tmp_path / "file"), "plugin_dirs": PLUGIN_DIRS})
    c = srv.session(read_greeting=False)
    assert c.closed()
    assert "store_dir" in c.stderr and c.proc.returncode == 78


def test_foreign_addresses_are_never_rewritten(make_config, tmp_path):
    srv = mail_server_config(make_config, "relay", "spam_gourmet",
                             files={"store_dir": str(tmp_path / "store")})
    with srv.session(env={"RELAYCLIENT": ""}) as c:
        code, text = c.send_message("me@example.test", ["john.smith.2@elsewhere.test"], "Subject: x\n\ny")
        assert code == 250, text
    assert delivered_to(srv) == [b"Delivered-To: john.smith.2@elsewhere.test"]
