"""loop / check_loop: messages that carry too many Received + Delivered-To header
fields are refused after DATA with qpsmtpd's `552 Too many hops (#5.4.6)`; the
others are delivered. check_loop is the same plugin (Debian's 0.94 wrapper refused
every message: not ours)."""

import pytest

TOO_MANY = "Too many hops (#5.4.6)"


def config(make_config, line):
    return make_config(plugins=[line, "rcpt_ok", "queue/maildir {maildir}"],
                       files={"rcpthosts": "example.test", "loglevel": "6"})


def message(received=0, delivered_to=0):
    fields = [f"Received: from hop{i}.example.net by hop{i + 1}.example.net; "
              f"Mon, 1 Jan 2024 00:00:{i % 60:02d} +0000" for i in range(received)]
    fields += [f"Delivered-To: box{i}@example.test" for i in range(delivered_to)]
    return "\n".join(fields + ["From: a@sender.test", "Subject: hops", "", "body"])


def send(srv, body, ehlo=False):
    """(code, text) of the reply to the message; HELO unless ehlo."""
    with srv.session() as c:
        if not ehlo:
            assert c.cmd("HELO client.example.net")[0] == 250
        return c.send_message("a@sender.test", ["u@example.test"], body, ehlo=ehlo)


@pytest.mark.parametrize("name", ["loop", "check_loop"])
def test_default_limit_is_100_counting_our_own_received_line(make_config, name):
    srv = config(make_config, name)
    assert send(srv, message(received=98))[0] == 250          # 98 + ours = 99
    assert send(srv, message(received=99)) == (552, TOO_MANY)
    assert len(srv.messages()) == 1


@pytest.mark.parametrize("line", ["loop 5", "loop max_hops 5", "check_loop 5",
                                  "check_loop max_hops 5 loglevel 7"])
def test_max_hops_argument(make_config, line):
    srv = config(make_config, line)
    assert send(srv, message(received=3))[0] == 250           # 3 + ours = 4
    assert send(srv, message(received=4)) == (552, TOO_MANY)
    (stored,) = srv.messages()
    assert sum(line.startswith(b"Received: ") for line in stored.split(b"\n")) == 4


def test_delivered_to_fields_count_as_hops(make_config):
    srv = config(make_config, "loop 5")
    assert send(srv, message(received=1, delivered_to=2))[0] == 250     # 1 + 2 + ours = 4
    assert send(srv, message(received=2, delivered_to=2)) == (552, TOO_MANY)
    assert send(srv, message(delivered_to=4)) == (552, TOO_MANY)
    lower = message(received=2, delivered_to=2).replace("Received:", "received:").replace(
        "Delivered-To:", "DELIVERED-TO:")
    assert send(srv, lower) == (552, TOO_MANY), "field names are case-insensitive"


def test_refusal_after_ehlo_carries_the_enhanced_code_and_the_session_goes_on(make_config):
    srv = config(make_config, "loop 3")
    with srv.session() as c:
        c.ehlo()
        assert c.send_message("a@sender.test", ["u@example.test"], message(received=2),
                              ehlo=False) == (552, "5.4.6 " + TOO_MANY)
        code, text = c.send_message("a@sender.test", ["u@example.test"], message(received=1),
                                    ehlo=False)
        assert code == 250, text
    assert "fail, 3 Received/Delivered-To fields (max_hops 3)" in c.stderr
    assert len(srv.messages()) == 1


@pytest.mark.parametrize("args, reason", [
    ("abc", "max_hops 'abc': expected an integer >= 1"),
    ("0", "max_hops '0': expected an integer >= 1"),
    ("-5", "max_hops '-5': expected an integer >= 1"),
    ("max_hops", "'max_hops' needs a value"),
    ("max_hops many", "max_hops 'many': expected an integer >= 1"),
    ("5 6", "unexpected argument '6'"),
    ("max_hop 5", "did you mean the keyword 'max_hops'?"),
    ("5 max_hops 6", "max_hops is given twice ('5' and '6')"),
])
@pytest.mark.parametrize("name", ["loop", "check_loop"])
def test_bad_arguments_stop_start_up(make_config, name, args, reason):
    srv = config(make_config, f"{name} {args}")
    c = srv.session(read_greeting=False)
    assert c.closed()
    err = c.stderr                         # waits for the process to end
    assert c.proc.returncode == 78
    assert "config/plugins:1" in err and reason in err, err
