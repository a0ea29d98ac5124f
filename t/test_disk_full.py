"""Disk full (issue 16 point 6): ENOSPC while spooling a message or writing the
Maildir gives the client 452 4.3.1 and the session goes on; a failed Maildir
write leaves nothing in tmp/; stale tmp/ files are removed at start (qmail).

The full disk is a 1 MiB tmpfs mounted for the test (tests run as root) and
unmounted afterwards."""

import contextlib
import os
import subprocess
import time

import pytest

BIG = "Subject: big\n\n" + ("x" * 76 + "\n") * 40000          # ~3 MB, over the tmpfs


@contextlib.contextmanager
def small_tmpfs(path, size="1m"):
    os.makedirs(path, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield str(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def deliver(client, body, ehlo=True):
    if ehlo:
        client.ehlo()
    assert client.cmd("MAIL FROM:<a@b.test>")[0] == 250
    assert client.cmd("RCPT TO:<u@example.test>")[0] == 250
    assert client.cmd("DATA")[0] == 354
    client.send("".join(line + "\r\n" for line in body.split("\n")) + ".\r\n")
    return client.read_reply()[0], client.text


def test_full_spool_gives_452_and_the_session_goes_on(mail_config, tmp_path):
    with small_tmpfs(tmp_path / "spool") as spool:
        srv = mail_config(files={"spool_dir": spool, "loglevel": "6"})
        with srv.session() as c:
            code, text = deliver(c, BIG)
            assert (code, text) == (452, "4.3.1 Insufficient system storage, try again later")
            # the rest of DATA was read to its end: the next command is answered
            try:
                code, text = deliver(c, "Subject: small\n\nfits", ehlo=False)
            except OSError as exc:
                raise AssertionError(f"{exc}; the server said:\n{c.stderr}")
            assert code == 250, text
            assert c.cmd("QUIT")[0] == 221
        assert "Traceback" not in c.stderr
        assert "No space left on device" in c.stderr
        assert len(srv.messages()) == 1


def test_full_maildir_gives_452_and_leaves_nothing_in_tmp(mail_config, tmp_path):
    with small_tmpfs(tmp_path / "Maildir") as maildir:
        srv = mail_config(files={"loglevel": "6"})
        with srv.session() as c:
            code, text = deliver(c, BIG)
            assert (code, text) == (452, "4.3.1 Insufficient system storage, try again later")
            assert os.listdir(os.path.join(maildir, "tmp")) == []
            assert os.listdir(os.path.join(maildir, "new")) == []
            code, text = deliver(c, "Subject: small\n\nfits", ehlo=False)
            assert code == 250, text
            assert c.cmd("QUIT")[0] == 221
        assert "Traceback" not in c.stderr
        assert os.listdir(os.path.join(maildir, "tmp")) == []
        assert len(os.listdir(os.path.join(maildir, "new"))) == 1


@pytest.mark.parametrize("pattern", [None, "%d/%l"])
def test_stale_maildir_tmp_files_are_removed_at_start(mail_config, tmp_path, pattern):
    base = tmp_path / "Maildir"
    tmp = base / "example.test" / "u" / "tmp" if pattern else base / "tmp"
    tmp.mkdir(parents=True)
    stale, fresh = tmp / "1.P1.host", tmp / "2.P2.host"
    stale.write_text("left by a killed worker")
    fresh.write_text("being written right now")
    old = time.time() - 37 * 3600
    os.utime(stale, (old, old))
    line = f"queue/maildir {base}" + (f" {pattern}" if pattern else "")
    srv = mail_config(files={"loglevel": "6"}, final=("rcpt_ok", line))
    with srv.session() as c:
        assert c.code == 220
        assert c.cmd("QUIT")[0] == 221
    assert not stale.exists()
    assert fresh.exists()
    assert "removed 1 stale file" in c.stderr


def test_stale_spool_scratch_files_are_removed_at_start(mail_config, tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    stale_file, stale_dir = spool / "qpsmtpd-abc123", spool / "qpsmtpd-dir456"
    fresh, foreign = spool / "qpsmtpd-new789", spool / "not-ours"
    stale_dir.mkdir()
    (stale_dir / "part").write_text("x")
    for path in (stale_file, fresh, foreign):
        path.write_text("x")
    old = time.time() - 37 * 3600
    for path in (stale_file, stale_dir, foreign):
        os.utime(path, (old, old))
    srv = mail_config(files={"loglevel": "6", "spool_dir": str(spool)})
    with srv.session() as c:
        assert c.cmd("QUIT")[0] == 221
    assert sorted(os.listdir(spool)) == ["not-ours", "qpsmtpd-new789"]


def test_full_spool_with_small_reads_in_process(session_server, tmp_path):
    """Each 1 KB read is its own write: the disk fills with bytes still in the
    spool file's buffer, which must not surface again (the size in the log line,
    the reset) as a traceback."""
    with small_tmpfs(tmp_path / "spool") as spool:
        srv = session_server(files={"spool_dir": spool, "loglevel": "6"})
        chunks = [b"x" * 1022 + b"\r\n"] * 1200
        d = srv.talk("EHLO client.test", "MAIL FROM:<a@b.test>", "RCPT TO:<u@example.test>",
                     "DATA", b"Subject: big\r\n\r\n", *chunks, b".\r\n",
                     "MAIL FROM:<a@b.test>", "RCPT TO:<u@example.test>", "DATA",
                     b"Subject: small\r\n\r\nfits\r\n.\r\n", "QUIT")
        assert d.codes == [220, 250, 250, 250, 354, 452, 250, 250, 354, 250, 221], d.log
        assert "Traceback" not in d.log
        assert len(d.messages) == 1
