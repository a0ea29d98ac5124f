"""rhsbl against the real nsd (zone rhsbl.test: spam.test and badhelo.test listed),
in-process sessions."""

import pytest

LISTED_TXT = "spam.test is listed in rhsbl.test"


def talk(session_server, *script, line="rhsbl", zones=("rhsbl.test",), files=None, **kw):
    server = session_server(line, files={"rhsbl_zones": "\n".join(zones), "loglevel": "6",
                                         **(files or {})})
    return server.talk(*script, "QUIT", remote_ip=kw.pop("ip", "192.0.2.10"), **kw)


def test_listed_sender_domain_is_refused_at_mail(session_server):
    d = talk(session_server, "HELO client.example.test", "MAIL FROM:<x@spam.test>",
             "MAIL FROM:<x@example.test>", "RCPT TO:<u@example.test>")
    assert d.pairs[2] == (550, f"Mail from spam.test rejected because it {LISTED_TXT}")
    assert d.codes[3:5] == [250, 250]
    assert d.connection.notes["karma"] == -1


def test_a_zone_with_message_uses_it(session_server):
    d = talk(session_server, "HELO client.example.test", "MAIL FROM:<x@spam.test>",
             zones=("rhsbl.test does not accept mail from spammers",))
    assert d.pairs[2] == (550, "Mail from spam.test rejected because it does not accept mail "
                               "from spammers")


def test_listed_helo_name_is_refused_at_mail(session_server):
    d = talk(session_server, "EHLO badhelo.test", "MAIL FROM:<x@example.test>")
    assert d.codes[1] == 250
    assert d.pairs[2] == (550, "5.7.1 Mail from HELO badhelo.test rejected because it "
                               "badhelo.test is listed in rhsbl.test")


def test_unlisted_passes_and_null_sender_is_not_checked(session_server):
    d = talk(session_server, "HELO client.example.test", "MAIL FROM:<x@example.test>", "RSET",
             "MAIL FROM:<>")
    assert d.codes[2] == 250 and d.codes[4] == 250
    d = talk(session_server, "HELO badhelo.test", "MAIL FROM:<>")
    assert d.codes[2] == 250
    assert "pass, null sender" in d.log


@pytest.mark.parametrize("line, code, closed", [
    ("rhsbl disconnect", 550, True), ("rhsbl reject_type disconnect", 550, True),
    ("rhsbl reject_type temp", 450, False), ("rhsbl reject 0", 250, False)])
def test_reject_arguments(session_server, line, code, closed):
    d = talk(session_server, "HELO client.example.test", "MAIL FROM:<x@spam.test>",
             "NOOP", line=line)
    assert d.codes[2] == code
    assert (len(d.replies) == 3) == closed


def test_immune_clients_and_literals_are_skipped(session_server):
    d = talk(session_server, "HELO client.example.test", "MAIL FROM:<x@spam.test>",
             relay_client=True)
    assert d.codes[2] == 250
    d = talk(session_server, "HELO [192.0.2.10]", "MAIL FROM:<x@[192.0.2.1]>")
    assert d.codes[2] == 250


def test_failing_zone_does_not_refuse(session_server):
    # nsd refuses a zone it does not serve: a server failure, not a listing
    d = talk(session_server, "HELO client.example.test", "MAIL FROM:<x@spam.test>",
             zones=("not-served.invalid", "rhsbl.test"))
    assert d.pairs[2][0] == 550
    assert "error, spam.test in not-served.invalid" in d.log


def test_same_domain_twice_is_asked_once(session_server):
    import os
    from dnsproxy import DNSProxy
    with DNSProxy(("127.0.0.1", int(os.environ.get("QPT_DNS_PORT", "5353")))) as proxy:
        d = talk(session_server, "HELO client.example.test",
                 *["MAIL FROM:<x@example.test>", "RSET"] * 20,
                 files={"dns_servers": f"127.0.0.1:{proxy.port}"})
        assert d.codes.count(250) == 41
        assert proxy.count("example.test.rhsbl.test") == 1
        assert proxy.count("client.example.test.rhsbl.test") == 1
