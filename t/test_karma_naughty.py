"""karma, naughty, connection_shaper and the berkeley_* plugins: in-process sessions
(pre-connection hooks included) on the fake clock against the real LMDB store, and
their admin tools (karma_tool, berkeley_operation) as subprocesses."""

import subprocess
import sys
import time

import pytest

from inproc import Dialogue, ScriptedChannel, parse_replies
from qpsmtpd_py.api import DENY_CODES, is_soft
from qpsmtpd_py.server.common import new_connection, run_session
from qpsmtpd_py.server.connect import run_pre_connection

pytestmark = pytest.mark.no_services

MSG = b"Subject: hi\r\n\r\nhello\r\n.\r\n"
DAY = 86400


def server(session_server, tmp_path, *lines, files=None, final=("rcpt_ok", "t_capture")):
    base = {"store_dir": str(tmp_path / "store"), "loglevel": "6"}
    base.update(files or {})
    return session_server(*lines, files=base, final=final)


def talk(srv, *script, ip="192.0.2.10", relay_client=False):
    """A session with the pre-connection hooks first, as the daemons run them;
    a refusal there gives a Dialogue with that one reply."""
    connection = new_connection((ip, 0), ("127.0.0.1", 25))
    connection.relay_client = relay_client
    channel = ScriptedChannel(script, srv.clock)
    start = srv.stderr.tell()
    code, messages = run_pre_connection(srv.app, connection, 0, [])
    if code in DENY_CODES:
        text = messages[0] if messages else "Sorry, try again later"
        reply = f"{451 if is_soft(code) else 550} {text}\r\n".encode()
        channel.sends.append((srv.clock.time(), reply))
    else:
        run_session(srv.app, channel, connection)
    log = srv.stderr.getvalue()[start:]
    return Dialogue(parse_replies(channel.sends), connection, channel, log,
                    list(connection.notes.get("t_capture", [])))


def mail(srv, ip="192.0.2.10", sender="a@sender.test", rcpts=("u@example.test",), extra=()):
    script = ["EHLO c.test", f"MAIL FROM:<{sender}>"] + [f"RCPT TO:<{r}>" for r in rcpts]
    return talk(srv, *script, "DATA", MSG, *extra, "QUIT", ip=ip)


def record(srv, ip="192.0.2.10"):
    from qpsmtpd_py.helpers.karma import ip_key, parse
    plugin = next(p for p in srv.app.plugins if p.plugin_name == "karma")
    return parse(plugin.store.table("karma").get(ip_key(ip)))


# -- karma ----------------------------------------------------------------------------------------
def test_naughty_connection_goes_to_the_penalty_box_then_is_released(session_server, tmp_path, clock):
    srv = server(session_server, tmp_path, "karma reject connect", "t_note karma -3")
    d = mail(srv)
    assert d.codes[-1] == 221 and "negative, sent to penalty box" in d.log
    assert record(srv)[1:] == (1, 0, 1)                  # naughty 1, nice 0, connects 1
    assert record(srv)[0] == int(clock.now)
    clock.advance(DAY / 2)
    d = mail(srv)
    assert d.pairs[0] == (550, "You were naughty. You cannot connect for 0.50 more days.")
    assert d.connection.notes["karma_history"] == -1
    clock.advance(DAY / 2)
    d = mail(srv)
    assert d.codes[0] == 220 and "pass, penalty expired" in d.log


def test_reject_naughty_is_applied_by_the_naughty_plugin(session_server, tmp_path, clock):
    srv = server(session_server, tmp_path, "karma", "t_note karma -3", "naughty")
    assert mail(srv).codes[-1] == 221
    d = mail(srv)
    assert d.codes[:4] == [220, 250, 250, 550] and d.channel.closed
    assert d.pairs[3][1].endswith("(karma) You were naughty. You cannot connect for 1.00 more days.")
    assert "reject naughty, but no naughty plugin" not in srv.stderr.getvalue()


def test_several_naughty_reasons_make_a_multi_line_reply(session_server, tmp_path):
    srv = server(session_server, tmp_path, "check_badmailfrom reject naughty",
                 "check_spamhelo reject naughty", "naughty reject data",
                 files={"badmailfrom": "bad@sender.test", "badhelo": "c.test"})
    d = mail(srv, sender="bad@sender.test")
    refusal = next(r for r in d.replies if r.code == 554)
    assert len(refusal.lines) == 2, refusal
    assert "(check_spamhelo)" in refusal.lines[0] and "(check_badmailfrom)" in refusal.lines[1]
    assert d.connection.notes["naughty"].count("\r\n") == 1


def test_karma_history_is_an_integer_note_from_pre_connection(session_server, tmp_path, clock):
    srv = server(session_server, tmp_path, "karma", "t_note karma 3")
    for _ in range(2):
        mail(srv)
    assert record(srv)[1:] == (0, 2, 2)
    d = mail(srv, rcpts=("u@example.test", "v@example.test"))
    assert d.connection.notes["karma_history"] == 2
    assert d.codes[3:5] == [250, 250]                    # good history: no recipient limit


def test_unknown_clients_get_one_recipient_per_message(session_server, tmp_path):
    srv = server(session_server, tmp_path, "karma")
    d = mail(srv, rcpts=("u@example.test", "v@example.test"))
    assert d.pairs[4][0] == 550 and d.pairs[4][1].endswith("too many recipients for karma 0 (h: 0)")
    assert d.codes[5:7] == [354, 250]


def test_tlds_illegal_envelopes_and_very_bad_karma(session_server, tmp_path):
    srv = server(session_server, tmp_path, "karma reject 1", files={"karma_tlds": "work:-4\nfr:+1"})
    d = talk(srv, "EHLO c.test", "MAIL FROM: <a@x.work>", "RCPT TO:<u@example.test>", "DATA",
             "QUIT")
    assert d.connection.notes["karma"] == -6
    assert d.pairs[4][0] == 554 and "very bad karma: -6" in d.pairs[4][1]
    d = mail(srv, sender="a@mail.fr", ip="192.0.2.11")     # .10 is in the penalty box now
    assert d.connection.notes["karma"] == 1 and d.codes[5] == 250


def test_relay_clients_are_never_refused_or_recorded(session_server, tmp_path):
    srv = server(session_server, tmp_path, "karma reject connect", "t_note karma -10")
    d = talk(srv, "EHLO c.test", "QUIT", relay_client=True)
    assert d.codes == [220, 250, 221]
    assert record(srv) == (0, 0, 0, 0)


def test_karma_store_error_refuses_nothing(session_server, tmp_path):
    import shutil
    srv = server(session_server, tmp_path, "karma reject connect", "t_note karma -3")
    shutil.rmtree(tmp_path / "store", ignore_errors=True)
    (tmp_path / "store").write_text("")
    d = mail(srv)
    assert d.codes[:6] == [220, 250, 250, 250, 354, 250] and "error, store:" in d.log


def test_karma_tool(session_server, tmp_path, clock):
    clock.now = time.time()
    srv = server(session_server, tmp_path, "karma", "t_note karma 3")
    mail(srv)
    tool = [sys.executable, "-m", "qpsmtpd_py.cli.karma_tool", "--dir", str(tmp_path / "store")]
    run = lambda *a: subprocess.run(tool + list(a), capture_output=True, text=True)  # noqa: E731
    out = run("list")
    assert out.returncode == 0 and "192.0.2.10" in out.stdout and "1 nice" in out.stdout
    assert run("capture", "192.0.2.10").returncode == 0
    assert record(srv)[1:] == (1, 1, 1) and record(srv)[0] > 0
    assert "192.0.2.10" in run("search", "both").stdout
    assert "192.0.2.10" not in run("search", "198.51.100.1").stdout
    d = mail(srv)
    assert "(karma) You were naughty" in d.connection.notes["naughty"]
    assert run("release", "192.0.2.10").returncode == 0
    assert record(srv)[:2] == (0, 0)
    assert run("prune", "0").stdout.startswith("pruned 1 of 1")
    assert run("capture", "not-an-ip").returncode == 2


# -- naughty -------------------------------------------------------------------------------------------
def test_naughty_at_mail_and_auth_clears_it(session_server, tmp_path):
    srv = server(session_server, tmp_path, "check_spamhelo reject naughty", "naughty reject mail",
                 files={"badhelo": "c.test"})
    d = mail(srv)
    assert d.codes[2] == 550 and "(check_spamhelo)" in d.pairs[2][1] and d.channel.closed


def test_naughty_uses_the_first_plugins_reject_type(session_server, tmp_path):
    srv = server(session_server, tmp_path, "check_spamhelo reject naughty reject_type temp",
                 "naughty", files={"badhelo": "c.test"})
    d = mail(srv)
    assert d.codes[3] == 450 and "(check_spamhelo)" in d.pairs[3][1]
    assert d.codes[-1] == 221                            # temp: the session goes on


# -- connection_shaper ---------------------------------------------------------------------------------
def test_connection_shaper_limits_per_window(session_server, tmp_path, clock):
    srv = server(session_server, tmp_path, "connection_shaper",
                 files={"connection_shaper": "exptime 60\nthreshold 3\nwhitelist 192.0.2.20, 10.0.0.0/8"})
    for _ in range(3):
        assert talk(srv, "QUIT").codes == [220, 221]
    d = talk(srv, "QUIT")
    assert d.pairs == [(451, "Sorry, try again later")] and "exceeds the threshold" in d.log
    assert talk(srv, "QUIT", ip="192.0.2.11").codes == [220, 221]     # per IP
    for ip in ("192.0.2.20", "10.1.2.3"):
        for _ in range(5):
            assert talk(srv, "QUIT", ip=ip).codes == [220, 221]
    clock.advance(60)
    assert talk(srv, "QUIT").codes == [220, 221]                    # a new window


def test_connection_shaper_bad_config_stops_start_up(session_server, tmp_path):
    with pytest.raises(Exception) as err:
        server(session_server, tmp_path, "connection_shaper", files={"connection_shaper": "treshold 3"})
    assert "connection_shaper:1" in str(err.value) and "treshold" in str(err.value)


# -- berkeley_* ------------------------------------------------------------------------------------------
def test_tokenbucket_blacklists_a_client_that_earns_refusals_too_fast(session_server, tmp_path, clock):
    args = "filename /var/db/ipbl.db method tokenbucket rate 0.1 size 3"
    srv = server(session_server, tmp_path, "berkeley_ipblacklist_ignore filename /var/db/ipbl.db",
                 f"berkeley_ipblacklist {args} action deny", f"berkeley_tokenbucketadd {args}",
                 files={"berkeley_ipblacklist_ignore": "192.0.2.99"})
    d = mail(srv, rcpts=("u@elsewhere.test", "v@elsewhere.test", "w@elsewhere.test"))
    assert d.codes[3:6] == [550, 550, 550]               # relaying denied x3: 3 tokens
    d = mail(srv)
    assert d.pairs[0] == (550, "Your IP is blacklisted, bye bye.") and d.channel.closed
    clock.advance(10)                                    # one token back
    assert mail(srv).codes[0] == 220
    for _ in range(2):
        mail(srv, ip="192.0.2.99", rcpts=("u@elsewhere.test",) * 3)
    assert mail(srv, ip="192.0.2.99").codes[0] == 220    # ignored: never counted
    table = srv.app.plugins[1].store.table("berkeley_ipbl.db")
    assert table.get("192.0.2.99") is None


def test_berkeley_operation_top_n_from_a_log_pipeline(session_server, tmp_path, clock):
    clock.now = time.time()
    srv = server(session_server, tmp_path, "berkeley_ipblacklist action denysoft")
    tool = [sys.executable, "-m", "qpsmtpd_py.cli.berkeley_operation", "--dir", str(tmp_path / "store")]
    pipeline = "   7 192.0.2.1\n   2 192.0.2.2\n  12 192.0.2.3\n   9 192.0.2.4\nnoise\n"
    out = subprocess.run(tool + ["add", "-", "--top", "2", "--min-count", "3", "--ttl", "3600"],
                         input=pipeline, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout == "added 2 to berkeley_ipblacklist\n", out.stderr
    assert mail(srv, ip="192.0.2.3").pairs[0] == (450, "Your IP is blacklisted, try again later.")
    assert mail(srv, ip="192.0.2.4").codes[0] == 450
    assert mail(srv, ip="192.0.2.1").codes[0] == 220
    listing = subprocess.run(tool + ["list"], capture_output=True, text=True).stdout
    assert [l.split("\t")[0] for l in listing.splitlines()] == ["192.0.2.3", "192.0.2.4"]
    assert subprocess.run(tool + ["remove", "192.0.2.3"]).returncode == 0
    assert subprocess.run(tool + ["remove", "192.0.2.3"], capture_output=True).returncode == 1
    assert mail(srv, ip="192.0.2.3").codes[0] == 220
    clock.advance(3601)
    assert mail(srv, ip="192.0.2.4").codes[0] == 220     # expired
    assert subprocess.run(tool + ["add", "999.1.1.1"], capture_output=True).returncode == 2


def test_hosts_allow_limit_follows_karma_history(session_server, tmp_path):
    srv = server(session_server, tmp_path, "karma", "hosts_allow", "t_note karma 3")
    for _ in range(6):
        mail(srv)                                        # history +6
    plugin = next(p for p in srv.app.plugins if p.plugin_name == "hosts_allow")
    others = ["192.0.2.10"] * 3
    for ip, expect in (("192.0.2.10", None), ("192.0.2.50", 451)):
        connection = new_connection((ip, 0), ("127.0.0.1", 25))
        code, messages = run_pre_connection(srv.app, connection, 2, others if ip == "192.0.2.10"
                                            else ["192.0.2.50"])
        assert (451 if code in DENY_CODES else None) == expect, (ip, code, messages)
    assert plugin is not None
