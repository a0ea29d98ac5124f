"""Address parsing: property tests of qpsmtpd_py.address.Address, then the edge
cases a client can send, over the wire to a real `qpsmtpd` process."""

import re

import pytest
from hypothesis import given, settings, strategies as st

from qpsmtpd_py.address import Address

# -- properties of the parser ----------------------------------------------------------

_label = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,8}[A-Za-z0-9])?", fullmatch=True)
_domain = st.one_of(
    st.lists(_label, min_size=1, max_size=4).map(".".join),
    st.ip_addresses(v=4).map(lambda ip: f"[{ip}]"),
    st.ip_addresses(v=6).map(lambda ip: f"[IPv6:{ip}]"),
)
# anything RFC 5321/6531 allows in a (quoted) local part: printable ASCII and UTF-8
_local_char = st.one_of(st.characters(min_codepoint=0x20, max_codepoint=0x7E),
                        st.characters(min_codepoint=0xA0, max_codepoint=0x2FFFF,
                                      blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp", "Cf")))
_local = st.text(_local_char, min_size=1, max_size=24)


@settings(max_examples=400, deadline=None)
@given(_local, _domain)
@pytest.mark.no_services
def test_format_parses_back_to_the_same_address(user, host):
    formatted = Address(user, host).format()
    parsed = Address.parse(formatted)
    assert parsed is not None, formatted
    assert (parsed.user, parsed.host) == (user, host), formatted
    assert parsed.format() == formatted
    assert str(parsed) == formatted and parsed.address == f"{user}@{host}"


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=60))
@pytest.mark.no_services
def test_parser_never_raises_on_arbitrary_text(text):
    for candidate in (text, f"<{text}>", f"<{text}@example.test>", f'<"{text}"@x.test>'):
        address = Address.parse(candidate)
        if address is not None and not address.is_null:
            again = Address.parse(address.format())
            assert again is not None, (candidate, address.format())
            assert (again.user, again.host) == (address.user, address.host)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet='<>@."\\ab.[]:,!%-_ 1Iv6é\t', max_size=30))
@pytest.mark.no_services
def test_parser_on_address_like_noise(text):
    address = Address.parse(text)
    if address is not None and not address.is_null:
        again = Address.parse(address.format())
        assert again is not None and again.format() == address.format()


@pytest.mark.no_services
def test_parse_table():
    assert Address.parse("<>").is_null
    assert Address.parse("<postmaster>").user == "postmaster"
    assert Address.parse("<root>") is None
    quoted = Address.parse('<"john doe"@example.test>')
    assert (quoted.user, quoted.host, quoted.format()) == ("john doe", "example.test", '<"john doe"@example.test>')
    routed = Address.parse("<@a.test,@b.test:u@c.test>")
    assert (routed.user, routed.host, routed.format()) == ("u", "c.test", "<u@c.test>")
    assert Address.parse('<"a\\"b"@x.test>').user == 'a"b'
    assert Address.parse('<"a\\"b"@x.test>').format() == '<"a\\"b"@x.test>'
    assert Address.parse("<u@[IPv6:2001:db8::1]>").host == "[IPv6:2001:db8::1]"
    for bad in ("<u@[300.1.1.1]>", "<u@[1.2.3]>", "<u@[IPv6:zz::1]>", "<u@[IPv6:1.2.3.4]>",
                "<u@>", "<@x.test>", "<u@x..test>", "<u@-x.test>", "<u\x00@x.test>", "<a@b@c.test>"):
        assert Address.parse(bad) is None, bad
    assert Address.parse("<U@Example.TEST>") == Address.parse("<u@example.test>")


# -- over the wire --------------------------------------------------------------------------

SENDER_OK = ", sender OK - how exciting to get mail from you!"


@pytest.fixture
def srv(make_config):
    return make_config(files={"rcpthosts": ["example.test", "xn--exmple-cua.test", "exämple.test"]})


@pytest.mark.parametrize("path, shown", [
    ('<"john doe"@b.test>', '<"john doe"@b.test>'),
    ('<"john.doe"@b.test>', "<john.doe@b.test>"),            # needless quotes dropped
    ('<"a\\"b"@b.test>', '<"a\\"b"@b.test>'),
    ("<@relay.test,@other.test:u@b.test>", "<u@b.test>"),    # source route stripped
    ("<@relay.test:u@b.test>", "<u@b.test>"),
    ("<u@[192.0.2.1]>", "<u@[192.0.2.1]>"),
    ("<u@[IPv6:2001:db8::1]>", "<u@[IPv6:2001:db8::1]>"),
    ("<u+tag=x/y@sub.b.test>", "<u+tag=x/y@sub.b.test>"),
    ("<U@B.TEST>", "<U@B.TEST>"),
])
def test_accepted_senders(srv, path, shown):
    with srv.session() as c:
        c.cmd("HELO client.test")
        assert c.cmd(f"MAIL FROM:{path}") == (250, shown + SENDER_OK)
        assert c.cmd("RCPT TO:<u@example.test>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send("Subject: a\r\n\r\nx\r\n.\r\n")
        assert c.read_reply()[0] == 250
    (msg,) = srv.messages()
    assert msg.startswith(f"Return-Path: {shown}\n".encode())


@pytest.mark.parametrize("path", [
    "<u@[300.1.1.1]>", "<u@[1.2.3]>", "<u@[IPv6:zz::1]>", "<u@[IPv6:1.2.3.4]>", "<u@[example]>",
    "<u@[]>", "<u@>", "<@b.test>", "<u@b..test>", "<u@-b.test>", "<a@b@c.test>", "<u@b.test >x",
    "<\"unterminated@b.test>", "<u@b.test\x01>", "<u@b_c.test>",
])
def test_refused_senders(srv, path):
    with srv.session() as c:
        c.cmd("HELO client.test")
        code, text = c.cmd(f"MAIL FROM:{path}")
        assert code == 501, (path, text)
        assert c.cmd("RCPT TO:<u@example.test>") == (503, "Use MAIL before RCPT")


@pytest.mark.parametrize("rcpt, shown", [
    ('<"john doe"@example.test>', '<"john doe"@example.test>'),
    ("<u@[192.0.2.1]>", None),     # parsed, but not a local domain: rcpt_ok refuses
    ("<@relay.test:u@example.test>", None),   # route hides a relay: refused
])
def test_recipients(srv, rcpt, shown):
    with srv.session() as c:
        c.cmd("HELO client.test")
        c.cmd("MAIL FROM:<a@b.test>")
        code, text = c.cmd(f"RCPT TO:{rcpt}")
        if shown:
            assert (code, text) == (250, f"{shown}, recipient ok")
        else:
            assert (code, text) == (550, "Relaying denied (#5.7.1)")


def test_utf8_addresses_need_ehlo_and_smtputf8(srv):
    with srv.session() as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<jösé@b.test>") == (553, "5.6.7 Non-ASCII address needs SMTPUTF8 (RFC 6531)")
        assert c.cmd("MAIL FROM:<a@b.test>")[0] == 250
        code, text = c.cmd("RCPT TO:<ü@example.test>")
        assert code == 553 and text.startswith("5.6.7 "), text
        assert c.cmd("MAIL FROM:<jösé@b.test> SMTPUTF8") == (250, "2.1.0 <jösé@b.test>" + SENDER_OK)
        assert c.cmd("RCPT TO:<ü@exämple.test>") == (250, "2.1.5 <ü@exämple.test>, recipient ok")
        assert c.cmd("DATA")[0] == 354
        c.send("Subject: ünïcode\r\n\r\nhällo\r\n.\r\n")
        assert c.read_reply()[0] == 250
    (msg,) = srv.messages()
    assert msg.startswith("Return-Path: <jösé@b.test>\nDelivered-To: ü@exämple.test\n".encode())
    assert msg.endswith("\nhällo\n".encode())


def test_utf8_address_after_helo_is_refused(srv):
    with srv.session() as c:
        c.cmd("HELO client.test")
        code, text = c.cmd("MAIL FROM:<jösé@b.test> SMTPUTF8")
        assert code == 553 and "SMTPUTF8" in text
        assert c.cmd("MAIL FROM:<a@b.test>")[0] == 250
        code, text = c.cmd("RCPT TO:<ü@example.test>")
        assert code == 553


@pytest.mark.parametrize("raw", [b"<\xff@b.test>", b"<a@b\xc3.test>", b"<\xc3\x28@b.test>",
                                 b"<\xed\xa0\x80@b.test>"])
def test_invalid_utf8_is_refused(srv, raw):
    with srv.session() as c:
        c.ehlo()
        c.send(b"MAIL FROM:" + raw + b" SMTPUTF8\r\n")
        code, _ = c.read_reply()
        assert code == 501
        c.cmd("MAIL FROM:<a@b.test> SMTPUTF8")
        c.send(b"RCPT TO:" + raw.replace(b"b.test", b"example.test") + b"\r\n")
        code, _ = c.read_reply()
        assert code == 501
        code, text = c.cmd("NOOP")
        assert code == 250 and re.search(r"OK$", text)
