"""hashcash: stamps minted for relay clients' mail (one per recipient, valid), checked
on incoming mail (resource, bits, date on the engine clock, double spending in the
store); no daemons."""

import hashlib

import pytest

from scanhelp import data_reply, header_of, message, transaction

pytestmark = pytest.mark.no_services
RCPTS = ("u@example.test", "v@example.test")


@pytest.fixture
def server(session_server, tmp_path):
    def make(args=""):
        return session_server(f"hashcash bits 12 {args}", "t_keepnote hashcash",
                              files={"loglevel": "6", "store_dir": str(tmp_path / "store")})
    return make


def zero_bits(stamp):
    digest = hashlib.sha1(stamp.encode()).digest()
    value = int.from_bytes(digest, "big")
    return 160 - value.bit_length()


def test_mint_for_relay_clients_then_verify_and_double_spending(server, clock):
    srv = server()
    d = srv.talk(*transaction(message("hello\n"), recipients=RCPTS), relay_client=True)
    assert data_reply(d)[0] == 250
    [sent] = d.messages
    stamps = header_of(sent)["x-hashcash"]
    assert sorted(s.split(":")[3] for s in stamps) == sorted(RCPTS)
    for stamp in stamps:
        version, bits, date = stamp.split(":")[:3]
        assert (version, bits, date) == ("1", "12", "231114") and zero_bits(stamp) >= 12
    incoming = sent["message"].decode()
    d = srv.talk(*transaction(incoming, recipients=RCPTS))
    assert sorted(d.connection.notes["t_keepnote"]["hashcash"]["valid"]) == sorted(RCPTS)
    assert d.connection.notes["karma"] == 1
    d = srv.talk(*transaction(incoming, recipients=RCPTS))            # the same stamps again
    assert d.connection.notes["t_keepnote"]["hashcash"] is None
    assert "spent before (double spending)" in d.log and data_reply(d)[0] == 250


def test_invalid_stamps(server, clock):
    srv = server("mint 1")
    d = srv.talk(*transaction(message("hi\n"), recipients=("u@example.test",)), relay_client=True)
    incoming = d.messages[0]["message"].decode()
    d = srv.talk(*transaction(incoming, recipients=("w@example.test",)))
    assert "is not a recipient" in d.log
    clock.advance(29 * 86400)
    d = srv.talk(*transaction(incoming, recipients=("u@example.test",)))
    assert "expired or dated in the future" in d.log
    forged = message("hi\n", "X-Hashcash: 1:12:231114:u@example.test::abc:0\nSubject: x\n")
    clock.advance(-29 * 86400)
    d = server("min_bits 12").talk(*transaction(forged, recipients=("u@example.test",)))
    assert "zero bits" in d.log and d.connection.notes["t_keepnote"]["hashcash"] is None


def test_mint_0(server):
    d = server("mint 0").talk(*transaction(message("hi\n")), relay_client=True)
    assert "x-hashcash" not in header_of(d.messages[0])
