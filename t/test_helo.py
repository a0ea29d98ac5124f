"""helo / check_spamhelo: the checks that need no DNS, over real SMTP sessions."""

import pytest

from harness import mail_server_config

CLIENT_IP = "192.0.2.10"

BADHELO = """# spam robots
aol.com
Yahoo.COM
^mail\\.bad[0-9]+\\.
!^[a-z0-9.:\\[\\]-]+$
(unclosed
"""


def server(make_config, line="helo", badhelo=BADHELO, extra=()):
    return mail_server_config(make_config, *extra, line, files={"badhelo": badhelo, "loglevel": "6"})


def helo(srv, name, verb="HELO", env=None):
    """(code, text, closed) of one HELO/EHLO."""
    with srv.session(env=env) as c:
        code, text = c.cmd(f"{verb} {name}")
        closed = c.closed(timeout=1 if code >= 400 else 0.2)
    return code, text, closed, c.stderr


@pytest.mark.parametrize("name, reply", [
    ("aol.com", "I do not believe you are aol.com."),
    ("AOL.com", "I do not believe you are AOL.com."),
    ("yahoo.com", "I do not believe you are yahoo.com."),
    ("mail.bad17.example", "Your HELO hostname is not allowed"),
    ("bad_name.example.org", "Your HELO hostname is not allowed"),   # the !regex line
    ("localhost", "You are not localhost"),
    ("LocalHost.localdomain", "You are not localhost"),
    ("[192.0.2.99]", "Forged IPs not accepted here"),
    ("[IPv6:2001:db8::1]", "Forged IPs not accepted here"),
    ("[192.0.2]", "Invalid address literal in HELO (RFC 5321 4.1.3)"),
    ("[300.1.1.1]", "Invalid address literal in HELO (RFC 5321 4.1.3)"),
    ("192.0.2.10", "Plain IP is invalid HELO hostname (RFC 2821)"),
    ("2001:db8::5", "Plain IP is invalid HELO hostname (RFC 2821)"),
    ("mx.example.test", "mx.example.test is my own name; you are not me"),
])
def test_lenient_refusals_close_the_connection(make_config, name, reply):
    code, text, closed, err = helo(server(make_config), name)
    assert (code, text) == (550, reply)
    assert closed
    assert "fail (" in err


def test_a_bad_regex_is_logged_with_file_and_line_and_skipped(make_config):
    code, _, _, err = helo(server(make_config), "fine.example.org")
    assert code == 250
    assert "badhelo:6: badhelo pattern '(unclosed' skipped" in err


@pytest.mark.parametrize("name", ["client.example.org", "[192.0.2.10]", "nodots.but.fine"])
def test_lenient_accepts(make_config, name):
    srv = server(make_config, badhelo="aol.com\n")
    code, text, closed, err = helo(srv, name)
    assert code == 250 and not closed, text


def test_ehlo_is_checked_too_and_check_spamhelo_is_the_same_plugin(make_config):
    srv = server(make_config, line="check_spamhelo")
    code, text, closed, _ = helo(srv, "aol.com", verb="EHLO")
    assert (code, text, closed) == (550, "I do not believe you are aol.com.", True)


def test_localhost_from_loopback_is_fine(make_config):
    srv = server(make_config, badhelo="")
    code, _, _, _ = helo(srv, "localhost", env={"TCPREMOTEIP": "127.0.0.1"})
    assert code == 250


def test_our_own_ip_literal_is_refused(make_config):
    srv = server(make_config, badhelo="")
    env = {"TCPLOCALIP": "198.51.100.1", "TCPREMOTEIP": "198.51.100.1"}
    assert helo(srv, "[198.51.100.1]", env=env)[0] == 250          # talking to ourselves
    env = {"TCPLOCALIP": "198.51.100.1", "TCPREMOTEIP": "203.0.113.5"}
    code, text, _, _ = helo(srv, "[198.51.100.1]", env=env)
    assert code == 550    # forged literal and our own IP: the forged check comes first
    code, text, _, _ = helo(srv, "MX.example.test", env={"TCPREMOTEIP": "127.0.0.1"})
    assert code == 250    # local programs may use our name


@pytest.mark.parametrize("name, reply", [
    ("nodots", "HELO name is not fully qualified. Read RFC 2821"),
    ("bad_name.example.org", "HELO name contains invalid FQDN characters. Read RFC 1035"),
])
def test_rfc_policy(make_config, name, reply):
    srv = server(make_config, line="helo policy rfc", badhelo="")
    assert helo(srv, name)[:2] == (550, reply)
    assert helo(srv, "good-name.example.org")[0] == 250
    assert helo(srv, "[192.0.2.10]")[0] == 250


def test_strict_policy_refuses_literals(make_config):
    srv = server(make_config, line="helo policy strict", badhelo="")
    code, text, _, _ = helo(srv, "[192.0.2.10]")
    assert (code, text) == (550, "RFC 2821 allows an address literal, but we do not")
    assert helo(srv, "good.example.org")[0] == 250


def test_reject_0_only_logs_and_reject_type_temp(make_config):
    srv = server(make_config, line="helo reject 0")
    code, _, closed, err = helo(srv, "aol.com")
    assert code == 250 and not closed
    assert "fail, tolerated (in badhelo: aol.com)" in err
    srv = server(make_config, line="helo reject_type temp")
    code, text, closed, _ = helo(srv, "aol.com")
    assert (code, closed) == (450, False)


def test_relay_clients_are_not_checked(make_config):
    srv = server(make_config, extra=["relay"])
    assert helo(srv, "aol.com", env={"RELAYCLIENT": ""})[0] == 250


def test_x_helo_header_replaces_the_clients_own(make_config):
    srv = server(make_config, badhelo="")
    with srv.session() as c:
        c.ehlo("client.example.org")
        code, text = c.send_message("a@sender.test", ["u@example.test"],
                                    "X-HELO: forged\nSubject: x\n\nbody", ehlo=False)
        assert code == 250, text
    (msg,) = srv.messages()
    head = msg.split(b"\n\n")[0]
    assert b"X-HELO: client.example.org\n" in head and b"forged" not in head


def test_unknown_policy_stops_start_up(make_config):
    srv = server(make_config, line="helo policy paranoid")
    c = srv.session(read_greeting=False)
    assert c.closed()
    assert "policy 'paranoid'" in c.stderr and c.proc.returncode == 78
