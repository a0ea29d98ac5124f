"""queue/lmtp against the real Dovecot LMTP service (t/services component lmtp).

Its users: alice, bob (ordinary), full (every message refused after DATA, 552),
busy and later (refused after DATA for now, 452); anybody else is refused at RCPT.
What each test checks is what the sender's MTA is told and what each mailbox holds."""

import contextlib
import glob
import os
import subprocess
import time
import uuid

import harness

LOCAL = {"rcpthosts": "example.test", "loglevel": "6"}


def lmtp_config(make_config, tmp_path, target=None, *extra):
    if target is None:
        target = f"{harness.service_env('QPT_LMTP_HOST')} {harness.service_env('QPT_LMTP_PORT')}"
    line = f"queue/lmtp {target} {' '.join(extra)}".rstrip()
    return make_config(["rcpt_ok", line],
                       files={**LOCAL, "store_dir": str(tmp_path / "store")})


def copies(user, marker):
    """How many messages holding `marker` the mailbox user@example.test has."""
    base = os.path.join(harness.service_env("QPT_LMTP_MAIL"), "example.test", user, "Maildir")
    count = 0
    for path in glob.glob(os.path.join(base, "new", "*")) + glob.glob(os.path.join(base, "cur", "*")):
        with open(path, "rb") as fh:
            count += marker.encode() in fh.read()
    return count


def message(marker):
    return f"Message-Id: <{marker}@b.test>\nSubject: {marker}\n\n.leading dot\nbody of {marker}\n"


def send(srv, rcpts, marker):
    with srv.session() as c:
        code, text = c.send_message("a@b.test", [f"{r}@example.test" for r in rcpts], message(marker))
    return code, text, c


def test_every_recipient_gets_one_copy_before_250(make_config, tmp_path):
    marker = f"lmtp-{uuid.uuid4().hex}"
    code, text, _ = send(lmtp_config(make_config, tmp_path), ["alice", "bob"], marker)
    assert code == 250 and "Queued! delivered to 2 recipient(s)" in text, text
    assert copies("alice", marker) == 1 and copies("bob", marker) == 1
    base = os.path.join(harness.service_env("QPT_LMTP_MAIL"), "example.test", "alice", "Maildir")
    delivered = [open(p, "rb").read() for p in glob.glob(os.path.join(base, "new", "*"))
                 if marker.encode() in open(p, "rb").read()][0]
    assert b"Received: from [192.0.2.10]" in delivered
    assert b"\n\n.leading dot\n" in delivered.replace(b"\r\n", b"\n")     # dot-stuffing undone


def test_unix_socket(make_config, tmp_path):
    marker = f"lmtp-{uuid.uuid4().hex}"
    srv = lmtp_config(make_config, tmp_path, harness.service_env("QPT_LMTP_SOCKET"))
    code, text, _ = send(srv, ["bob"], marker)
    assert code == 250, text
    assert copies("bob", marker) == 1


def test_recipient_refused_at_rcpt_holds_back_the_others(make_config, tmp_path):
    """Before the message is sent nothing is delivered: the client's 552 is true for
    both recipients, and resending to alice cannot give her a second copy."""
    marker = f"lmtp-{uuid.uuid4().hex}"
    code, text, _ = send(lmtp_config(make_config, tmp_path), ["alice", "nobody"], marker)
    assert code == 552, text
    assert "<nobody@example.test>: 550 5.1.1" in text
    assert "<alice@example.test>: not sent, another recipient was refused" in text
    assert copies("alice", marker) == 0


def test_permanent_failure_after_data_names_who_got_it(make_config, tmp_path):
    marker = f"lmtp-{uuid.uuid4().hex}"
    code, text, c = send(lmtp_config(make_config, tmp_path), ["alice", "full"], marker)
    assert code == 552, text
    assert "delivered to <alice@example.test>" in text
    assert "<full@example.test>: 552 5.2.2 <full@example.test> Quota exceeded" in text
    assert copies("alice", marker) == 1 and copies("full", marker) == 0
    assert "fail, <full@example.test>: 552 5.2.2" in c.stderr


def test_temporary_failure_after_data_retry_goes_only_to_the_rest(make_config, tmp_path):
    """alice gets it, later is over quota for now: 452. The client retries: alice is
    not sent a second copy; later still fails: 452 again. Once later's quota is lifted
    the retry delivers to later alone and the client finally gets 250."""
    marker = f"lmtp-{uuid.uuid4().hex}"
    srv = lmtp_config(make_config, tmp_path)
    code, text, _ = send(srv, ["alice", "later"], marker)
    assert code == 452, text
    assert "delivered to <alice@example.test>" in text
    assert "<later@example.test>: 452 4.2.2" in text
    code, text, _ = send(srv, ["alice", "later"], marker)               # retry, still full
    assert code == 452 and "delivered earlier to 1 recipient(s)" in text, text
    assert copies("alice", marker) == 1 and copies("later", marker) == 0
    with lifted_quota("later"):
        code, text, c = send(srv, ["alice", "later"], marker)
    assert code == 250, text
    assert copies("alice", marker) == 1 and copies("later", marker) == 1
    assert "retry: 1 recipient(s) had it already, 1 to go" in c.stderr
    code, text, _ = send(srv, ["alice", "later"], marker)               # a late duplicate retry
    assert code == 250 and "earlier" in text, text
    assert copies("alice", marker) == 1 and copies("later", marker) == 1


def test_another_message_to_the_same_recipients_is_delivered(make_config, tmp_path):
    """The record is per message: same sender and recipients, another body -> delivered."""
    srv = lmtp_config(make_config, tmp_path)
    first, second = f"lmtp-{uuid.uuid4().hex}", f"lmtp-{uuid.uuid4().hex}"
    assert send(srv, ["alice", "busy"], first)[0] == 452
    assert send(srv, ["alice"], second)[0] == 250
    assert copies("alice", first) == 1 and copies("alice", second) == 1


def test_server_down_is_451_and_nothing_is_accepted(make_config, tmp_path):
    port = harness.free_port()                           # nothing listens there
    code, text, c = send(lmtp_config(make_config, tmp_path, f"127.0.0.1 {port}"), ["alice"], "down")
    assert code == 451 and "Unable to queue message (connection refused)" in text, text
    assert f"127.0.0.1:{port}: Connection refused" in c.stderr
    missing = str(tmp_path / "no-such-socket")
    code, text, _ = send(lmtp_config(make_config, tmp_path, missing), ["alice"], "down")
    assert code == 451 and "Unable to queue message (no such file or directory)" in text, text


def test_unreadable_delivery_record_sends_nothing(make_config, tmp_path):
    marker = f"lmtp-{uuid.uuid4().hex}"
    srv = lmtp_config(make_config, tmp_path)
    (tmp_path / "store").write_text("a file where the store directory should be")
    code, text, c = send(srv, ["alice"], marker)
    assert code == 451 and "delivery record unavailable" in text, text
    assert copies("alice", marker) == 0


def test_bad_target_stops_startup(make_config, tmp_path):
    srv = make_config(["rcpt_ok", "queue/lmtp bad!host"], files=LOCAL)
    with srv.session(read_greeting=False) as c:
        assert c.closed()
    assert "queue/lmtp" in c.stderr and "bad!host" in c.stderr


@contextlib.contextmanager
def lifted_quota(user):
    path = harness.service_env("QPT_LMTP_USERS")
    with open(path) as fh:
        original = fh.read()
    line = next(l for l in original.splitlines() if l.startswith(f"{user}@"))
    changed = original.replace(line, f"{user}@example.test:::::::userdb_quota_rule=*:storage=1G")
    try:
        _replace(path, changed, user, "storage=1G")
        yield
    finally:
        _replace(path, original, user, "storage=1B")


def _replace(path, text, user, rule):
    """Write beside and rename, so Dovecot never reads a half-written file, then wait
    until its auth process has read it: it looks at the file at most once a second."""
    tmp = path + ".new"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o644)
    os.rename(tmp, path)
    conf = os.path.join(os.path.dirname(path), "dovecot.conf")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        out = subprocess.run(["doveadm", "-c", conf, "user", f"{user}@example.test"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT).stdout
        if rule.encode() in out:
            return
        time.sleep(0.1)
    raise AssertionError(f"Dovecot did not pick up {rule} for {user}: {out!r}")
