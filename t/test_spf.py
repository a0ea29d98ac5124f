"""sender_permitted_from: SPF against the test nsd (zone auth.test, client 192.0.2.10),
the reject levels, Received-SPF and Authentication-Results, malformed records, a DNS
server that stops answering, and a subset of the RFC 7208 test suite through our
resolver (zone rfc7208.test)."""

import json
import os
import sys
import time

import pytest

from authtools import auth_results, header_values, reply
from dnsfault import DNSRelay
from inproc import message_wire

HERE = os.path.dirname(os.path.abspath(__file__))
MESSAGE = message_wire("From: a@auth.test\nSubject: spf\n\nhello")


@pytest.fixture
def session_server(session_server):
    """The conftest fixture with the plugin's log lines kept (loglevel 6)."""
    def make(*lines, files=None, **kw):
        return session_server(*lines, files={"loglevel": "6", **(files or {})}, **kw)
    return make


def mail(server, sender, helo="client.auth.test", data=True, **talk):
    script = [f"EHLO {helo}", f"MAIL FROM:<{sender}>", "RCPT TO:<u@example.test>"]
    if data:
        script += ["DATA", MESSAGE]
    return server.talk(*script, "QUIT", **talk)


def spf_result(message):
    (ar,) = auth_results(message)
    found = [r for r in ar.results if r.method == "spf"]
    return found[0].result if found else None


# -- the levels table --------------------------------------------------------------------
# domain (under auth.test) -> SPF result for the client 192.0.2.10
RESULTS = {"pass": "pass", "fail": "fail", "softfail": "softfail", "neutral": "neutral",
           "none": "none", "badmech": "permerror", "unserved": "temperror"}

# result -> {level: (code, text start)}; levels not listed accept (250)
TABLE = {
    "fail": {2: (450, "SPF - fail: "), 3: (550, "SPF - forgery: "), 4: (550, "SPF - forgery: "),
             5: (550, "SPF - forgery: "), 6: (550, "SPF - forgery: ")},
    "softfail": {3: (450, "SPF - fail: "), 4: (550, "SPF - fail: "), 5: (550, "SPF - fail: "),
                 6: (550, "SPF - fail: ")},
    "neutral": {5: (550, "SPF - neutral: "), 6: (550, "SPF - neutral: ")},
    "none": {6: (550, "SPF - none: ")},
    "permerror": {4: (450, "SPF - permerror: "), 5: (450, "SPF - permerror: "),
                  6: (550, "SPF - permerror: ")},
    "temperror": {2: (450, "SPF - temperror: "), 3: (450, "SPF - temperror: "),
                  4: (450, "SPF - temperror: "), 5: (450, "SPF - temperror: "),
                  6: (450, "SPF - temperror: ")},
}


@pytest.mark.parametrize("level", [0, 1, 2, 3, 4, 5, 6])
def test_reject_levels(session_server, level):
    server = session_server(f"sender_permitted_from reject {level}")
    for domain, result in RESULTS.items():
        d = mail(server, f"user@{domain}.auth.test", data=False)
        code, text = reply(d, 2)
        want = TABLE.get(result, {}).get(level)
        if want is None:
            assert code == 250, (domain, level, d.pairs)
        else:
            assert (code, text[:len(want[1])]) == want, (domain, level, d.pairs)
            assert f"fail, {result}" in d.log


def test_refusal_texts_and_karma(session_server):
    server = session_server("sender_permitted_from reject 3")
    d = mail(server, "user@fail.auth.test", data=False)
    assert reply(d, 2) == (550, "SPF - forgery: domain of fail.auth.test does not designate "
                               "192.0.2.10 as permitted sender (192.0.2.10 may not send mail "
                               "for fail.auth.test)")
    assert d.connection.notes["karma"] == -1
    d = mail(server, "user@pass.auth.test", data=False)
    assert reply(d, 2)[0] == 250 and d.connection.notes["karma"] == 1


def test_received_spf_and_one_authentication_results(session_server):
    server = session_server("sender_permitted_from reject 3")
    d = mail(server, "user@mxpass.auth.test")
    (msg,) = d.messages
    (received_spf,) = header_values(msg, "Received-SPF")
    assert received_spf.startswith("Pass (mx.example.test: domain of mxpass.auth.test designates "
                                   "192.0.2.10 as permitted sender) client-ip=192.0.2.10; "
                                   'envelope-from="user@mxpass.auth.test"; helo=client.auth.test;')
    assert received_spf.endswith("identity=mailfrom")
    (ar,) = auth_results(msg)
    assert ar.authserv_id == "mx.example.test"
    spf = [r for r in ar.results if r.method == "spf"]
    assert [(r.result, r.smtp_mailfrom) for r in spf] == [("pass", "mxpass.auth.test")]


def test_results_never_grow_across_messages_on_one_connection(session_server):
    server = session_server("sender_permitted_from reject 1")
    d = server.talk("EHLO client.auth.test",
                    "MAIL FROM:<a@pass.auth.test>", "RCPT TO:<u@example.test>", "DATA", MESSAGE,
                    "MAIL FROM:<a@fail.auth.test>", "RCPT TO:<u@example.test>", "DATA", MESSAGE,
                    "RSET",
                    "MAIL FROM:<a@softfail.auth.test>", "MAIL FROM:<a@neutral.auth.test>",
                    "RCPT TO:<u@example.test>", "DATA", MESSAGE, "QUIT")
    results = []
    for msg in d.messages:
        (ar,) = auth_results(msg)
        results.append([(r.method, r.result) for r in ar.results])
        assert len(header_values(msg, "Received-SPF")) == 1
    assert results[0] == [("auth", "none"), ("spf", "pass")]
    assert results[1] == [("auth", "none"), ("spf", "fail")]
    # a second MAIL in one transaction (the first was refused by the core as nested, or
    # accepted): only one spf entry, never two
    assert len([m for m, _ in results[2] if m == "spf"]) == 1


@pytest.mark.parametrize("behavior, code", [("3", 550), ("0", 250), ("2", 450), ("junk", 250)])
def test_spfbehavior_file_when_reject_is_not_given(session_server, behavior, code):
    server = session_server("sender_permitted_from", files={"spfbehavior": behavior})
    d = mail(server, "user@fail.auth.test", data=False)
    assert reply(d, 2)[0] == code
    if behavior == "junk":
        assert "config spfbehavior: 'junk' is not 0-6" in d.log


@pytest.mark.parametrize("deny, code", [("1", 450), ("2", 550)])
def test_old_spf_deny_spelling(session_server, deny, code):
    server = session_server(f"sender_permitted_from spf_deny {deny}")
    assert mail(server, "user@softfail.auth.test", data=False).pairs[2][0] == code


def test_null_sender_is_checked_against_the_helo_name(session_server):
    server = session_server("sender_permitted_from reject 3")
    d = mail(server, "", helo="helo.auth.test")
    assert reply(d, 2)[0] == 250
    (ar,) = auth_results(d.messages[0])
    (spf,) = [r for r in ar.results if r.method == "spf"]
    assert (spf.result, spf.smtp_helo) == ("pass", "helo.auth.test")
    d = mail(server, "", helo="badhelo.auth.test", data=False)
    assert reply(d, 2)[0] == 550 and reply(d, 2)[1].startswith("SPF - forgery: ")
    d = mail(server, "user@[192.0.2.10]", data=False)          # an address literal: none
    assert reply(d, 2)[0] == 250 and "is an address literal" in d.log
    d = mail(server, "", helo="nodots", data=False)
    assert reply(d, 2)[0] == 250 and "skip, null sender and no HELO name" in d.log


@pytest.mark.parametrize("domain, result", [
    ("two", "permerror"),          # two v=spf1 records
    ("badip", "permerror"),        # ip4:192.0.2.300
    ("badmech", "permerror"),      # unknown mechanism
    ("nonascii", "permerror"),     # 8-bit bytes in the record
    ("ctrl", "permerror"),         # a TAB between terms
    ("split", "pass"),             # one record in two strings
    ("notspf", "none"),            # v=spf10 and plain text are not SPF records
    ("inclnone", "permerror"),     # include: of a domain without SPF
    ("loop", "permerror"),         # include: of itself: the lookup limit
    ("voids", "permerror"),        # three void lookups
    ("unserved", "temperror"),     # include: of a zone no server answers for
    ("exists", "pass"),            # exists:%{i}.ok.auth.test (macro)
    ("redir", "pass"), ("inclpass", "pass"), ("mxpass", "pass"),
])
def test_malformed_and_assorted_records(session_server, domain, result):
    server = session_server("sender_permitted_from reject 0")
    d = mail(server, f"user@{domain}.auth.test")
    assert spf_result(d.messages[0]) == result


def test_dns_server_never_answering_costs_at_most_the_timeout(session_server):
    with DNSRelay(silent=True) as relay:
        server = session_server("sender_permitted_from reject 2",
                                files={"dns_servers": relay.address, "dns_timeout": "1"})
        start = time.monotonic()
        d = mail(server, "user@pass.auth.test", data=False)
        elapsed = time.monotonic() - start
    assert reply(d, 2)[0] == 450 and reply(d, 2)[1].startswith("SPF - temperror: ")
    assert elapsed < 3, elapsed
    assert relay.queries >= 1


def test_dns_server_stopping_mid_session_gives_temperror_not_a_hang(session_server):
    with DNSRelay() as relay:
        server = session_server("sender_permitted_from reject 3 timeout 3",
                                files={"dns_servers": relay.address, "dns_timeout": "1"})

        def stop(_server=None):
            relay.silent = True
        start = time.monotonic()
        d = server.talk("EHLO client.auth.test", "MAIL FROM:<a@pass.auth.test>", "RCPT TO:<u@example.test>",
                        "RSET", stop, "MAIL FROM:<a@mxpass.auth.test>", "QUIT")
        elapsed = time.monotonic() - start
    assert reply(d, 2)[0] == 250                       # answered before the stop
    assert reply(d, 5)[0] == 450 and reply(d, 5)[1].startswith("SPF - temperror: "), d.pairs
    assert elapsed < 5, elapsed


def test_without_reject_a_dead_dns_server_accepts_with_temperror_recorded(session_server):
    with DNSRelay(silent=True) as relay:
        server = session_server("sender_permitted_from",
                                files={"dns_servers": relay.address, "dns_timeout": "1"})
        d = mail(server, "user@pass.auth.test")
    assert d.codes[-2] == 250
    assert spf_result(d.messages[0]) == "temperror"


def test_ipv6_clients(session_server):
    server = session_server("sender_permitted_from reject 3")
    d = mail(server, "user@v6.auth.test", remote_ip="2001:db8::10")
    assert spf_result(d.messages[0]) == "pass"
    assert "client-ip=2001:db8::10;" in header_values(d.messages[0], "Received-SPF")[0]
    d = mail(server, "user@v6.auth.test", data=False, remote_ip="2001:db9::10")
    assert reply(d, 2)[0] == 550


def test_relay_clients_are_not_checked(session_server):
    server = session_server("sender_permitted_from reject 6")
    d = mail(server, "user@fail.auth.test", relay_client=True)
    assert d.codes[-2] == 250
    assert header_values(d.messages[0], "Received-SPF") == []


# -- RFC 7208 test suite subset (t/services/rfc7208.zone, t/rfc7208_cases.json) -------------
with open(os.path.join(HERE, "rfc7208_cases.json")) as _fh:
    RFC7208 = json.load(_fh)


def test_rfc7208_suite_subset_through_our_resolver(mail_config):
    """Each case evaluated by pyspf with every lookup answered by our resolver from nsd."""
    from qpsmtpd_py.app import Qpsmtpd
    from qpsmtpd_py.config import Config
    from qpsmtpd_py.helpers.dns import resolver_for, SessionResolver

    config = mail_config("sender_permitted_from")
    app = Qpsmtpd(Config([config.dir]))
    app.load()
    (plugin,) = [p for p in app.plugins if p.plugin_name == "sender_permitted_from"]
    module = sys.modules[type(plugin).__module__]
    assert len(RFC7208) >= 150
    failures = []
    for scenario, name, ip, mailfrom, helo, expected in RFC7208:
        module._session.resolver = SessionResolver(resolver_for(app))
        try:
            got = module.spf.query(ip, mailfrom, helo, querytime=20).check()[0]
        finally:
            module._session.resolver = None
        if got not in expected:
            failures.append(f"{scenario}/{name}: {got}, expected {expected}")
    assert not failures, failures


def test_outside_a_session_pyspf_never_asks_the_system_resolver(mail_config):
    from qpsmtpd_py.app import Qpsmtpd
    from qpsmtpd_py.config import Config

    app = Qpsmtpd(Config([mail_config("sender_permitted_from").dir]))
    app.load()
    (plugin,) = [p for p in app.plugins if p.plugin_name == "sender_permitted_from"]
    module = sys.modules[type(plugin).__module__]
    assert module.spf.query("192.0.2.10", "a@pass.auth.test", "h.test").check()[0] == "temperror"
