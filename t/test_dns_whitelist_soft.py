"""dns_whitelist_soft against the real nsd (zone dnswl.test: 127.0.0.2 with A and TXT,
127.0.0.3 with A only), in-process sessions."""


def talk(session_server, lines, ip, zones=("dnswl.test",), files=None):
    server = session_server(*lines, files={"whitelist_zones": "\n".join(zones),
                                           "dnsbl_zones": "dnsbl.test", "loglevel": "6",
                                           **(files or {})})
    return server.talk("HELO client.example.test", "MAIL FROM:<a@example.test>",
                       "RCPT TO:<u@example.test>", "QUIT", remote_ip=ip)


def test_txt_listing_sets_the_note_and_exempts_from_dnsbl(session_server):
    d = talk(session_server, ["dns_whitelist_soft", "dnsbl"], "127.0.0.2")
    assert d.connection.notes["whitelisthost"] == "127.0.0.2 is whitelisted in dnswl.test"
    assert d.codes[3] == 250
    assert "skip, whitelisted host" in d.log


def test_even_against_dnsbl_reject_connect(session_server):
    d = talk(session_server, ["dns_whitelist_soft", "dnsbl reject connect"], "127.0.0.2")
    assert d.codes[0] == 220


def test_a_only_listing(session_server):
    d = talk(session_server, ["dns_whitelist_soft"], "127.0.0.3", zones=("dnswl.test ignored words",))
    assert d.connection.notes["whitelisthost"] == "whitelisted by dnswl.test"


def test_not_listed(session_server):
    d = talk(session_server, ["dns_whitelist_soft", "dnsbl"], "127.0.0.9")
    assert "whitelisthost" not in d.connection.notes
    assert "skip, not whitelisted" in d.log


def test_error_codes_are_not_listings(session_server):
    # dnsbl.test answers 127.255.255.254 for 127.0.0.25: an operator's error code
    d = talk(session_server, ["dns_whitelist_soft"], "127.0.0.25", zones=("dnsbl.test",))
    assert "whitelisthost" not in d.connection.notes
    assert "not a list answer: 127.255.255.254" in d.log


def test_no_zones_no_lookups(session_server):
    d = talk(session_server, ["dns_whitelist_soft"], "127.0.0.2", zones=())
    assert "whitelisthost" not in d.connection.notes
