"""greylisting (and its alias denysoft_greylist): in-process sessions on the fake
clock against the real LMDB store; the Redis backend and real servers are in
t/test_store_redis.py and t/test_shared_state_concurrency.py."""

import os
import shutil
import subprocess
import sys
import time

import pytest

from qpsmtpd_py.helpers.greylist import client_key, triplet_key

pytestmark = pytest.mark.no_services

MSG = b"Subject: hi\r\n\r\nhello\r\n.\r\n"
DENIED = "This mail is temporarily denied"


def server(session_server, tmp_path, line="greylisting", files=None, final=("rcpt_ok", "t_capture")):
    base = {"store_dir": str(tmp_path / "store"), "loglevel": "6"}
    base.update(files or {})
    return session_server(line, files=base, final=final)


def mail(srv, sender="a@sender.test", rcpts=("u@example.test",), ip="192.0.2.10", **kw):
    script = ["EHLO c.test", f"MAIL FROM:<{sender}>"]
    script += [f"RCPT TO:<{r}>" for r in rcpts] + ["DATA", MSG, "QUIT"]
    return srv.talk(*script, remote_ip=ip, **kw)


def test_new_client_is_deferred_until_black_timeout_then_white(session_server, tmp_path, clock):
    srv = server(session_server, tmp_path, "greylisting black_timeout 300")
    d = mail(srv)
    assert d.pairs[2] == (450, f"4.7.1 {DENIED}") or d.pairs[2][0] == 450
    assert DENIED in d.pairs[2][1] and "fail: initial DENYSOFT, unknown" in d.log
    clock.advance(299)
    d = mail(srv)
    assert d.codes[2] == 450 and "black DENYSOFT - 1 deferred connections" in d.log
    clock.advance(2)
    d = mail(srv)
    assert d.codes[2:6] == [250, 250, 354, 250] and "pass: updated grey->white" in d.log
    clock.advance(86400 * 30)                    # white for 36 days after the last delivery
    d = mail(srv, sender="other@elsewhere.test", rcpts=("v@example.test",))
    assert d.codes[5] == 250 and "pass: white, 2 deliveries" in d.log
    assert len(d.messages) == 1
    assert srv.app.plugins[0].store.table("greylist").get(client_key("192.0.2.10")) \
        .decode().endswith(":1:1:2")             # ts:new:black:white, qpsmtpd's shape


def test_white_entry_times_out_and_late_retry_starts_over(session_server, tmp_path, clock):
    srv = server(session_server, tmp_path, "greylisting black_timeout 60 grey_timeout 600 "
                                           "white_timeout 3600")
    assert mail(srv).codes[2] == 450
    clock.advance(700)                           # retried after grey_timeout: starts over
    d = mail(srv)
    assert d.codes[2] == 450 and "initial DENYSOFT" in d.log     # the store forgot it (TTL)
    clock.advance(61)
    assert mail(srv).codes[5] == 250
    clock.advance(3601)
    d = mail(srv)
    assert d.codes[2] == 450


def test_sender_and_recipient_triplets_at_rcpt(session_server, tmp_path, clock):
    srv = server(session_server, tmp_path, "greylisting sender 1 recipient 1 black_timeout 10")
    d = mail(srv, rcpts=("u@example.test", "v@example.test"))
    assert d.codes[2:5] == [250, 450, 450]       # each recipient its own triplet
    clock.advance(11)
    d = mail(srv, rcpts=("u@example.test", "w@example.test"))
    assert d.codes[2:5] == [250, 250, 450]
    assert [m["recipients"] for m in d.messages] == [["u@example.test"]] or d.codes[5] == 354
    keys = {k.decode() for k, _ in srv.app.plugins[0].store.table("greylist").items()}
    ip = client_key("192.0.2.10")
    assert keys == {f"{ip}:a@sender.test:u@example.test", f"{ip}:a@sender.test:v@example.test",
                    f"{ip}:a@sender.test:w@example.test"}


def test_null_sender_is_deferred_at_data(session_server, tmp_path):
    for line in ("greylisting", "greylisting recipient 1"):
        srv = server(session_server, tmp_path / line.replace(" ", "_"), line)
        d = mail(srv, sender="")
        assert d.codes[2:5] == [250, 250, 451], d.pairs
        assert DENIED in d.pairs[4][1]


def test_deny_late_defers_at_data(session_server, tmp_path):
    srv = server(session_server, tmp_path, "greylisting deny_late 1")
    d = mail(srv)
    assert d.codes[2:5] == [250, 250, 451]


def test_relay_clients_and_whitelisted_are_skipped(session_server, tmp_path):
    srv = server(session_server, tmp_path, "greylisting")
    d = mail(srv, relay_client=True)
    assert d.codes[5] == 250 and "skip, relay client" in d.log
    srv = server(session_server, tmp_path / "wl", "whitelist",
                 files={"whitelisthosts": "192.0.2.10"},
                 final=("greylisting", "rcpt_ok", "t_capture"))
    d = mail(srv)
    assert d.codes[5] == 250 and "skip, whitelisted host" in d.log
    assert not list(srv.app.plugins[1].store.table("greylist").items())


def test_reject_0_and_mode_testonly_only_record(session_server, tmp_path, clock):
    for n, line in enumerate(("greylisting reject 0", "greylisting mode testonly",
                              "denysoft_greylist mode off")):
        srv = server(session_server, tmp_path / str(n), line)
        d = mail(srv)
        assert d.codes[5] == 250 and "tolerated (reject 0)" in d.log
        assert len(list(srv.app.plugins[0].store.table("greylist").items())) == 1


def test_config_file_settings_and_unknown_keys(session_server, tmp_path, clock):
    srv = server(session_server, tmp_path, "denysoft_greylist",
                 files={"denysoft_greylist": "black_timeout 5\n# c\nsender 1"})
    assert mail(srv).codes[2] == 450
    clock.advance(6)
    assert mail(srv).codes[5] == 250
    key = next(k for k, _ in srv.app.plugins[0].store.table("greylist").items())
    assert key.decode().endswith(":a@sender.test")
    with pytest.raises(Exception) as err:
        server(session_server, tmp_path / "bad", "greylisting",
               files={"denysoft_greylist": "black_timout 5"})
    assert "denysoft_greylist:1" in str(err.value) and "black_timeout" in str(err.value)


def test_per_recipient_settings_from_user_config(session_server, tmp_path, clock):
    users = tmp_path / "users"
    (users / "nogrey@example.test").mkdir(parents=True)
    (users / "nogrey@example.test" / "denysoft_greylist").write_text("reject 0\n")
    srv = server(session_server, tmp_path, f"t_user_config {users}",
                 final=("greylisting per_recipient 1", "rcpt_ok", "t_capture"))
    d = mail(srv, rcpts=("u@example.test", "nogrey@example.test"))
    assert d.codes[3:5] == [450, 250], d.pairs


def test_subnet_grouping(session_server, tmp_path, clock):
    srv = server(session_server, tmp_path, "greylisting subnet 1 black_timeout 10")
    assert mail(srv, ip="192.0.2.10").codes[2] == 450
    clock.advance(11)
    assert mail(srv, ip="192.0.2.77").codes[5] == 250      # same /24
    assert mail(srv, ip="192.0.3.10").codes[2] == 450      # another /24
    assert mail(srv, ip="2001:db8:1:2::1").codes[2] == 450
    clock.advance(11)
    assert mail(srv, ip="2001:db8:1:2:ffff::9").codes[5] == 250   # same /64
    assert client_key("192.0.2.77", subnet=True) == f"{int.from_bytes(bytes([192, 0, 2, 0]), 'big')}/24"


def test_auto_whitelist_after_n_passes(session_server, tmp_path, clock):
    srv = server(session_server, tmp_path, "greylisting sender 1 black_timeout 10 auto_whitelist 2")
    for sender in ("a@x.test", "b@x.test"):
        assert mail(srv, sender=sender).codes[2] == 450
        clock.advance(11)
        assert mail(srv, sender=sender).codes[5] == 250
    d = mail(srv, sender="new@y.test")           # never seen, but the client passed twice
    assert d.codes[5] == 250 and "auto-whitelisted client (2 passes)" in d.log


def test_exclude_files(session_server, tmp_path):
    (tmp_path / "clients").write_text("# postgrey style\n192.0.2.99\nsouthwest.com\n/^mta\\d\\.siol\\.net$/\n")
    files = {"greylist_exclude_files": str(tmp_path / "clients")}
    srv = server(session_server, tmp_path, "greylisting", files=files)
    assert mail(srv, ip="192.0.2.99").codes[5] == 250
    assert mail(srv, ip="192.0.2.98", remote_host="mx1.southwest.com").codes[5] == 250
    assert mail(srv, ip="192.0.2.97", remote_host="mta2.siol.net").codes[5] == 250
    assert mail(srv, ip="192.0.2.96", remote_host="notsouthwest.com").codes[2] == 450


def test_whitelisted_recipients_skip_at_data(session_server, tmp_path):
    srv = server(session_server, tmp_path, "whitelist",
                 files={"whitelistrcpt": "postmaster@example.test"},
                 final=("greylisting deny_late 1", "rcpt_ok", "t_capture"))
    d = mail(srv, rcpts=("postmaster@example.test",))
    assert d.codes[5] == 250 and "all recipients whitelisted" in d.log


def test_store_error_means_no_greylisting_and_a_logged_error(session_server, tmp_path, clock):
    """The store breaks after start-up (its directory is gone, a file in its place):
    the message is accepted without greylisting and the error is logged."""
    srv = server(session_server, tmp_path, "greylisting recipient 1")
    store = tmp_path / "store"
    shutil.rmtree(store, ignore_errors=True)
    store.write_text("not a directory")
    d = mail(srv, rcpts=("u@example.test",))
    assert d.codes[2:6] == [250, 250, 354, 250], (d.pairs, d.log)
    assert "error, store:" in d.log and "(no greylisting)" in d.log
    assert len(d.messages) == 1


def test_flood_of_unique_triplets_never_fills_the_store(session_server, tmp_path, clock):
    """1800 unique triplets in a 128 KB store that holds fewer than 500: entries that
    can no longer matter expire (grey_timeout) and their room is used again; nothing
    ever fails."""
    srv = server(session_server, tmp_path, "greylisting recipient 1 black_timeout 60 grey_timeout 600",
                 files={"store_map_size": "128k", "store_max_size": "128k"})
    for window in range(6):
        for chunk in range(3):
            rcpts = [f"user{window}x{chunk}x{n}@example.test" for n in range(100)]
            script = ["EHLO c.test", f"MAIL FROM:<s{chunk}@sender.test>"]
            script += [f"RCPT TO:<{r}>" for r in rcpts] + ["QUIT"]
            d = srv.talk(*script)
            assert d.codes[3:-1] == [450] * 100, d.log[-500:]
        clock.advance(601)
    assert "error" not in d.log.lower()
    assert os.path.getsize(tmp_path / "store" / "data.mdb") <= 128 * 1024


def test_qpsmtpd_store_greylist_commands(session_server, tmp_path, clock):
    clock.now = time.time()                      # the tool reads expiry by the real clock
    srv = server(session_server, tmp_path, "greylisting sender 1")
    assert mail(srv).codes[2] == 450
    tool = [sys.executable, "-m", "qpsmtpd_py.cli.store_tool", "--dir", str(tmp_path / "store"), "greylist"]
    out = subprocess.run(tool + ["list"], capture_output=True, text=True)
    assert out.returncode == 0 and "192.0.2.10:a@sender.test" in out.stdout and "\tgrey\t" in out.stdout
    out = subprocess.run(tool + ["whitelist", "192.0.2.11", "--sender", "b@x.test"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert mail(srv, ip="192.0.2.11", sender="b@x.test").codes[5] == 250
    out = subprocess.run(tool + ["delete", "192.0.2.10", "--sender", "a@sender.test"],
                         capture_output=True, text=True)
    assert out.returncode == 0
    assert subprocess.run(tool + ["delete", "192.0.2.10", "--sender", "a@sender.test"]).returncode == 1
    assert triplet_key("192.0.2.10", "A@Sender.test") == f"{client_key('192.0.2.10')}:a@sender.test"


def test_p0f_and_geoip_selectors_and_ignored_db_dir(session_server, tmp_path):
    srv = server(session_server, tmp_path, "t_p0f genre Windows link DSL",
                 final=("greylisting p0f genre,windows db_dir /var/lib/qpsmtpd/greylisting",
                        "rcpt_ok", "t_capture"))
    assert "db_dir is ignored" in srv.stderr.getvalue()
    assert mail(srv).codes[2] == 450                     # a Windows client: greylisted
    srv = server(session_server, tmp_path / "linux", "t_p0f genre Linux",
                 final=("greylisting p0f genre,windows", "rcpt_ok", "t_capture"))
    d = mail(srv)
    assert d.codes[5] == 250 and "skip: no p0f match" in d.log
    srv = server(session_server, tmp_path / "geo", "t_note geoip_country us",
                 final=("greylisting geoip US,DE", "rcpt_ok", "t_capture"))
    d = mail(srv)
    assert d.codes[5] == 250 and "geoip country match (US)" in d.log
    with pytest.raises(Exception, match="'os' is not one of genre"):
        server(session_server, tmp_path / "bad", "greylisting p0f os,windows")


def test_white_refresh_reads_instead_of_writing_within_the_interval(session_server, tmp_path, clock):
    srv = server(session_server, tmp_path, "greylisting black_timeout 10 white_refresh 60")
    table = srv.app.plugins[0].store.table("greylist")
    assert mail(srv).codes[2] == 450
    clock.advance(11)
    assert mail(srv).codes[5] == 250                     # grey -> white (written)
    record = table.get(client_key("192.0.2.10"))
    clock.advance(30)
    d = mail(srv)
    assert d.codes[5] == 250 and "renewed 30s ago" in d.log
    assert table.get(client_key("192.0.2.10")) == record   # read only
    clock.advance(31)
    d = mail(srv)
    assert d.codes[5] == 250 and "pass: white, 2 deliveries" in d.log   # written again


def test_white_triplet_is_rewritten_at_most_once_a_minute_by_default(session_server, tmp_path, clock):
    """white_refresh 60 (the default): a known sender's next messages pass on what the
    worker saw, without touching the store; a triplet deleted meanwhile passes for at
    most those 60 seconds, then starts over."""
    srv = server(session_server, tmp_path, "greylisting black_timeout 10")
    table = srv.app.plugins[0].store.table("greylist")
    key = client_key("192.0.2.10")
    assert mail(srv).codes[2] == 450
    clock.advance(11)
    assert mail(srv).codes[5] == 250                     # grey -> white (written)
    record = table.get(key)
    clock.advance(20)
    d = mail(srv)
    assert d.codes[5] == 250 and "pass: white, renewed 20s ago" in d.log
    assert table.get(key) == record                      # not rewritten
    assert table.delete(key)                             # qpsmtpd-store greylist delete
    clock.advance(30)
    d = mail(srv)
    assert d.codes[5] == 250 and "renewed 50s ago" in d.log   # this worker saw it white
    clock.advance(11)
    d = mail(srv)                                        # 61 s: the store is asked again
    assert d.codes[2] == 450 and "fail: initial DENYSOFT, unknown" in d.log


def test_white_refresh_0_rewrites_every_delivery_as_qpsmtpd(session_server, tmp_path, clock):
    srv = server(session_server, tmp_path, "greylisting black_timeout 10 white_refresh 0")
    assert mail(srv).codes[2] == 450
    clock.advance(11)
    assert mail(srv).codes[5] == 250
    for deliveries in (2, 3):
        clock.advance(1)
        d = mail(srv)
        assert d.codes[5] == 250 and f"pass: white, {deliveries} deliveries" in d.log
    record = srv.app.plugins[0].store.table("greylist").get(client_key("192.0.2.10"))
    assert record.decode().endswith(":3")


def test_exclusion_is_logged_for_every_message_of_a_session(session_server, tmp_path):
    """greylist_exclude_files is looked at once per connection; each message still says why."""
    (tmp_path / "exclude").write_text("192.0.2.10\n")
    srv = server(session_server, tmp_path, "greylisting",
                 files={"greylist_exclude_files": str(tmp_path / "exclude")})
    script = ["EHLO c.test"]
    for n in range(3):
        script += [f"MAIL FROM:<a{n}@sender.test>", "RCPT TO:<u@example.test>", "DATA", MSG]
    d = srv.talk(*script, "QUIT", remote_ip="192.0.2.10")
    assert d.codes.count(250) >= 10 and len(d.messages) == 3
    assert d.log.count("skip: 192.0.2.10 excluded by") == 3
