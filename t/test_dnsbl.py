"""dnsbl against the real nsd (zones dnsbl.test and b.dnsbl.test of
t/services/start-services.sh), in-process sessions; a DNS server that never
answers and a counting proxy bound the cost of a session."""

import os
import time

import pytest

from dnsproxy import DNSProxy
from harness import service_env

ENVELOPE = ("HELO client.example.test", "MAIL FROM:<a@sender.test>")
LISTED_TXT = "127.0.0.2 is listed in dnsbl.test"


@pytest.fixture
def nsd():
    return ("127.0.0.1", int(service_env("QPT_DNS_PORT")))


def talk(session_server, line="dnsbl", zones=("dnsbl.test",), files=None, ip="127.0.0.2",
         rcpts=("u@example.test",), script=None, **kw):
    server = session_server(line, files={"dnsbl_zones": "\n".join(zones), "loglevel": "6",
                                         **(files or {})})
    script = script or (*ENVELOPE, *(f"RCPT TO:<{r}>" for r in rcpts), "QUIT")
    return server.talk(*script, remote_ip=ip, **kw)


def test_listed_client_is_refused_at_rcpt_with_the_txt(session_server):
    d = talk(session_server, rcpts=("u@example.test", "v@example.test"))
    assert d.codes[0] == 220 and d.codes[2] == 250
    assert d.pairs[3] == (550, LISTED_TXT)
    assert d.pairs[4] == (550, LISTED_TXT)
    assert d.connection.notes["dnsbl"] == LISTED_TXT
    assert d.connection.notes["karma"] == -1


@pytest.mark.parametrize("rcpt", ["postmaster@example.test", "Abuse@example.test",
                                  "mailer-daemon@example.test", "root@example.test", "postmaster"])
def test_special_accounts_stay_reachable(session_server, rcpt):
    d = talk(session_server, rcpts=(rcpt, "u@example.test"))
    assert d.codes[3] == 250
    assert d.pairs[4] == (550, LISTED_TXT)


def test_unlisted_client_passes(session_server):
    d = talk(session_server, ip="127.0.0.9")
    assert d.codes[3] == 250
    assert "dnsbl" not in d.connection.notes
    assert "dnsbl: pass" in d.log


def test_a_zone_with_message_uses_it_with_the_ip(session_server):
    d = talk(session_server, zones=("dnsbl.test:See http://bl.test/?ip=%IP% (%IP%)",))
    assert d.pairs[3] == (550, "See http://bl.test/?ip=127.0.0.2 (127.0.0.2)")


def test_a_zone_with_empty_message_says_blocked_by(session_server):
    d = talk(session_server, zones=("dnsbl.test:",))
    assert d.pairs[3] == (550, "Blocked by dnsbl.test")


def test_second_zone_lists_and_rejectmsg_comes_first(session_server):
    d = talk(session_server, zones=("dnsbl.test", "b.dnsbl.test"), ip="127.0.0.3",
             files={"dnsbl_rejectmsg": "You are listed.\nAsk your provider."})
    assert d.replies[3].code == 550
    assert d.replies[3].lines == ["You are listed.", "Ask your provider.",
                                  "127.0.0.3 is listed in b.dnsbl.test"]


def test_reject_connect_refuses_instead_of_the_greeting(session_server):
    d = talk(session_server, line="dnsbl reject connect")
    assert d.pairs == [(550, LISTED_TXT)]
    assert d.channel.closed


def test_reject_type_disconnect_and_the_legacy_lone_word(session_server):
    for line in ("dnsbl reject_type disconnect", "dnsbl disconnect"):
        d = talk(session_server, line=line, rcpts=("u@example.test", "v@example.test"))
        assert d.pairs[3] == (550, LISTED_TXT)
        assert len(d.replies) == 4, line          # closed after the refusal


def test_reject_type_temp(session_server):
    d = talk(session_server, line="dnsbl reject_type temp")
    assert d.pairs[3] == (450, LISTED_TXT)


def test_reject_0_only_logs(session_server):
    d = talk(session_server, line="dnsbl reject 0")
    assert d.codes[3] == 250
    assert "fail, tolerated" in d.log
    assert d.connection.notes["dnsbl"] == LISTED_TXT


def test_reject_naughty_stores_the_refusal_at_connect_and_postmaster_clears_it(session_server):
    d = talk(session_server, line="dnsbl reject naughty", rcpts=("u@example.test",))
    assert d.codes[3] == 250
    assert d.connection.notes["naughty"] == f"(dnsbl) {LISTED_TXT}"   # qpsmtpd's shape
    d = talk(session_server, line="dnsbl reject naughty", rcpts=("postmaster@example.test",))
    assert not d.connection.notes.get("naughty") and not d.connection.notes.get("rejected")


def test_dnsbl_allow_skips_the_lookups(session_server):
    for entry in ("127.0.0.2", "127.0.0.", "127.0.0", "127.0.0.0/24"):
        d = talk(session_server, files={"dnsbl_allow": entry})
        assert d.codes[3] == 250, entry
        assert "dnsbl_pending" not in d.connection.notes


def test_relay_clients_are_not_refused(session_server):
    d = talk(session_server, relay_client=True)
    assert d.codes[3] == 250


def test_ipv6_client_in_nibble_form(session_server):
    d = talk(session_server, ip="2001:db8::2")
    assert d.pairs[3] == (550, "2001:db8::2 is listed in dnsbl.test")
    assert talk(session_server, ip="2001:db8::3").codes[3] == 250


# -- RBLSMTPD ---------------------------------------------------------------------------
def test_rblsmtpd_empty_exempts(session_server, monkeypatch):
    monkeypatch.setenv("RBLSMTPD", "")
    d = talk(session_server)
    assert d.codes[3] == 250
    assert "RBLSMTPD set but empty" in d.log


def test_rblsmtpd_text_refuses_without_lookups(session_server, monkeypatch):
    monkeypatch.setenv("RBLSMTPD", "-Go away %IP%")
    d = talk(session_server, ip="127.0.0.9", files={"dnsbl_rejectmsg": "Blocked here."})
    assert d.replies[3].code == 550
    assert d.replies[3].lines == ["Blocked here.", "Go away 127.0.0.9"]
    d = talk(session_server, line="dnsbl reject connect", ip="127.0.0.9",
             files={"dnsbl_rejectmsg": ""})
    assert d.pairs == [(550, "Go away 127.0.0.9")]


# -- what a list answers ----------------------------------------------------------------
@pytest.mark.parametrize("ip, text", [
    ("127.0.0.20", "injected 250 2.0.0 pretend OK"),        # CR LF inside the TXT
    ("127.0.0.21", "two strings"),                          # two character-strings
    ("127.0.0.22", "bad ?? bytes nul"),                     # not UTF-8, a NUL
    ("127.0.0.23", "Blocked by dnsbl.test"),                # empty TXT
])
def test_malformed_txt_gives_one_clean_line(session_server, ip, text):
    d = talk(session_server, ip=ip)
    assert d.replies[3].code == 550
    assert d.replies[3].lines == [text]
    assert b"\r\n250 2.0.0 pretend" not in d.wire


def test_overlong_txt_is_cut(session_server):
    d = talk(session_server, ip="127.0.0.24")
    text = d.replies[3].text
    assert d.replies[3].code == 550 and len(text) == 300 and text.endswith("...")
    assert text.startswith("L" * 250 + "M")


@pytest.mark.parametrize("ip, logged", [("127.0.0.25", "127.255.255.254"),
                                        ("127.0.0.26", "192.0.2.1")])
def test_error_codes_and_foreign_answers_are_not_listings(session_server, ip, logged):
    d = talk(session_server, zones=("dnsbl.test:listed",), ip=ip)
    assert d.codes[3] == 250
    assert f"not a list answer: {logged}" in d.log


def test_bad_zone_lines_are_logged_and_skipped(session_server):
    d = talk(session_server, zones=("bad zone!", "dnsbl.test"))
    assert d.pairs[3] == (550, LISTED_TXT)
    assert "dnsbl_zones:1: 'bad zone!' is not a zone name" in d.log


@pytest.mark.parametrize("line, error", [
    ("dnsbl rejekt 1", "did you mean the keyword 'reject'"),
    ("dnsbl reject maybe", "reject 'maybe': expected one of 1, 0, naughty, connect"),
    ("dnsbl timeout soon", "timeout 'soon'"),
])
def test_bad_arguments_stop_start_up(session_server, line, error):
    with pytest.raises(Exception, match=error):
        session_server(line)


# -- cost: once per connection, bounded by dns_timeout ----------------------------------
def test_1000_recipients_ask_each_zone_once(session_server, nsd):
    with DNSProxy(nsd) as proxy:
        d = talk(session_server, zones=("dnsbl.test", "b.dnsbl.test"), ip="127.0.0.9",
                 rcpts=[f"u{i}@example.test" for i in range(1000)],
                 files={"dns_servers": f"127.0.0.1:{proxy.port}"})
        assert d.codes.count(250) == 1002
        assert proxy.count() == 2
        assert proxy.count("9.0.0.127.dnsbl.test") == proxy.count("9.0.0.127.b.dnsbl.test") == 1


def test_a_dns_server_that_never_answers_costs_dns_timeout_once(session_server, nsd):
    with DNSProxy(nsd, answer=False) as proxy:
        start = time.monotonic()
        d = talk(session_server, zones=("dnsbl.test", "b.dnsbl.test", "c.dnsbl.test"),
                 rcpts=[f"u{i}@example.test" for i in range(200)],
                 files={"dns_servers": f"127.0.0.1:{proxy.port}", "dns_timeout": "1.5"})
        elapsed = time.monotonic() - start
    assert d.codes.count(250) == 202                   # a DNS outage never refuses mail
    assert elapsed < 2.6, elapsed     # one dns_timeout (1.5 s), not two
    assert proxy.count() >= 3
    assert "not counted as listed" in d.log


def test_delayed_answers_overlap(session_server, nsd):
    with DNSProxy(nsd, delay=0.5) as proxy:
        start = time.monotonic()
        d = talk(session_server, zones=[f"z{i}.dnsbl.test" for i in range(5)] + ["dnsbl.test"],
                 files={"dns_servers": f"127.0.0.1:{proxy.port}"})
        elapsed = time.monotonic() - start
    assert d.pairs[3] == (550, LISTED_TXT)
    assert proxy.count() == 6
    assert 0.5 <= elapsed < 1.5, elapsed         # one round trip; one after the other: 3 s
