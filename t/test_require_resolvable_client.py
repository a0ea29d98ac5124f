"""require_resolvable_client and nodialup against the real nsd (127.in-addr.arpa and
dnscheck.test of t/services/start-services.sh)."""

import re

import pytest

import importlib.util
import os

PLUGINS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "plugins")


def talk(session_server, line, ip, rcpts=("u@example.test",), files=None, **kw):
    server = session_server(line, files={"loglevel": "6", **(files or {})})
    return server.talk("HELO client.example.test", "MAIL FROM:<a@example.test>",
                       *(f"RCPT TO:<{r}>" for r in rcpts), "QUIT", remote_ip=ip, **kw)


# -- require_resolvable_client ----------------------------------------------------------
@pytest.mark.parametrize("ip, reply", [
    ("127.0.0.1", None), ("127.0.0.3", None),
    ("127.0.0.4", "Your address 127.0.0.4 has no name in the DNS (no PTR record)"),
    ("127.0.0.6", "The name fail6.dnscheck.test of your address 127.0.0.6 does not resolve back to it"),
    ("127.0.0.7", "The name nxname.dnscheck.test of your address 127.0.0.7 does not resolve back to it"),
])
def test_rcpt_refusals(session_server, ip, reply):
    d = talk(session_server, "require_resolvable_client", ip, rcpts=("u@example.test", "postmaster"))
    assert d.pairs[3] == ((450, reply) if reply else (250, d.pairs[3][1]))
    assert d.codes[4] == 250


def test_forward_lookup_0_needs_only_a_ptr(session_server):
    d = talk(session_server, "require_resolvable_client forward_lookup 0", "127.0.0.6")
    assert d.codes[3] == 250
    d = talk(session_server, "require_resolvable_client forward_lookup 0 permfail 1", "127.0.0.4")
    assert d.codes[3] == 550


def test_at_connect_refuses_the_greeting(session_server):
    d = talk(session_server, "require_resolvable_client at_connect 1 permfail 1", "127.0.0.4")
    assert d.pairs == [(550, "Your address 127.0.0.4 has no name in the DNS (no PTR record)")]
    assert d.channel.closed


def test_per_recipient_follows_recipient_options(session_server):
    aliases = ("plain@example.test: plain@example.test\n"
               "strict@example.test (require_resolvable_client): strict@example.test\n"
               "lax@example.test (require_resolvable_client=x): lax@example.test\n")
    server = session_server("aliases_check", "require_resolvable_client per_recipient 1",
                            files={"loglevel": "6", "aliases": aliases})
    d = server.talk("HELO x.test", "MAIL FROM:<a@example.test>", "RCPT TO:<plain@example.test>",
                    "RCPT TO:<strict@example.test>", "QUIT", remote_ip="127.0.0.4")
    assert d.codes[3] == 250
    assert d.codes[4] == 450


def test_client_options_skip_and_relay_clients(session_server):
    d = talk(session_server, "require_resolvable_client", "127.0.0.4", relay_client=True)
    assert d.codes[3] == 250
    server = session_server("t_client_options require_resolvable_client",
                            "require_resolvable_client at_connect 1")
    assert server.talk("QUIT", remote_ip="127.0.0.4").codes == [220, 221]


def test_at_connect_with_per_recipient_stops_start_up(session_server):
    with pytest.raises(Exception, match="at_connect and per_recipient cannot be combined"):
        session_server("require_resolvable_client at_connect 1 per_recipient 1")


# -- nodialup ----------------------------------------------------------------------------
def load_nodialup():
    spec = importlib.util.spec_from_file_location("nodialup_t", os.path.join(PLUGINS, "nodialup.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name, ip, dynamic", [
    ("adsl-192-0-2-10.dyn.example.net", "192.0.2.10", True),
    ("p5B0C2A3F.dip0.example.de", "91.12.42.63", True),
    ("10.2.0.192.in.example.com", "192.0.2.10", True),
    ("host192000002010.example.com", "192.0.2.10", True),
    ("c000020a.example.com", "192.0.2.10", True),
    ("pool12.example.com", "198.51.100.7", True),
    ("cpe-3.example.com", "198.51.100.7", True),
    ("mail.example.com", "192.0.2.10", False),
    ("mx-192-0-2-11.example.com", "192.0.2.10", False),   # another address
    ("dslreports.example.com", "192.0.2.10", False),      # a word inside a label
    ("smtp.pooled-services.example", "192.0.2.10", False),
])
def test_dynamic_names(name, ip, dynamic):
    import ipaddress
    module = load_nodialup()
    patterns = [re.compile(module.DYNAMIC_WORDS, re.I)] + module.ip_patterns(ipaddress.ip_address(ip))
    assert any(p.search(name) for p in patterns) == dynamic


def test_nodialup_refuses_a_dynamic_ptr_but_not_postmaster(session_server):
    d = talk(session_server, "nodialup", "127.0.0.5", rcpts=("u@example.test", "abuse@example.test"))
    assert d.pairs[3] == (550, "Dynamic or dial-up address dynamic-127-0-0-5.pool.example.test "
                               "[127.0.0.5]: please send through your provider's mail server")
    assert d.codes[4] == 250
    d = talk(session_server, "nodialup", "127.0.0.8")
    assert d.codes[3] == 550


@pytest.mark.parametrize("ip", ["127.0.0.1", "127.0.0.4"])   # a static name; no PTR at all
def test_nodialup_passes(session_server, ip):
    assert talk(session_server, "nodialup", ip).codes[3] == 250


def test_nodialup_patterns_file_replaces_the_words(session_server):
    files = {"nodialup_patterns": "\\.pool\\.\n(bad"}
    d = talk(session_server, "nodialup ip_in_name 0", "127.0.0.8", files=files)
    assert d.codes[3] == 250                     # adsl-127-0-0-8.dyn: no longer matched
    assert "nodialup_patterns:2: pattern '(bad' skipped" in d.log
    d = talk(session_server, "nodialup ip_in_name 0", "127.0.0.5", files=files)
    assert d.codes[3] == 550
