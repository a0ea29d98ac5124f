"""kill -9 of workers at every phase (issue 16 point 10): clients deliver messages
with unique markers while a killer SIGKILLs a random busy worker every few tens
of milliseconds; a checker compares what each client was told with the Maildir.
Nothing answered 250 may be missing. A test plugin sleeps a few milliseconds in
every hook so the kills land inside them too (connect ... queue, queue_post).

CI runs KILLS kills; by hand: QPT_KILL_TRIALS=500 (-s prints the tally). Results
are in docs/reliability.md."""

import collections
import os
import random
import re
import signal
import threading
import time
import uuid

from harness import Client
from serverproc import Server, wait_until

KILLS = int(os.environ.get("QPT_KILL_TRIALS", "40"))

JITTER_PLUGIN = '''
import random, time
from qpsmtpd_py.api import DECLINED, Plugin

class TJitter(Plugin):
    """Sleeps 0-15 ms in every hook of a session, so kills land inside hooks."""
    def register(self, *args):
        for hook in ("connect", "helo", "ehlo", "mail", "rcpt", "data", "data_post",
                     "queue_pre", "queue_post", "reset_transaction"):
            self.register_hook(hook, self.pause)

    def pause(self, *args, **kw):
        time.sleep(random.random() * 0.015)
        return DECLINED
'''


def client_loop(server, stop, told, errors):
    while not stop.is_set():
        marker = uuid.uuid4().hex
        try:
            c = Client.connect("127.0.0.1", server.port, timeout=10)
            code, _ = c.send_message("a@b.test", ["u@example.test"], f"Subject: {marker}\n\nbody")
            told[marker] = code
            c.close()
        except (OSError, EOFError, AssertionError) as exc:
            told.setdefault(marker, type(exc).__name__)
            errors[type(exc).__name__] += 1


def test_kill_9_at_every_phase_loses_nothing_answered_250(mail_config, tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "t_jitter.py").write_text(JITTER_PLUGIN)
    srv = mail_config("t_jitter", files={"loglevel": "3",
                                         "plugin_dirs": [str(plugins), *__import__("harness").PLUGIN_DIRS]})
    told, errors, phases = {}, collections.Counter(), collections.Counter()
    with Server("qpsmtpd-prefork", srv, "--children", "6", "--idle-children", "4") as server:
        wait_until(lambda: len(server.children()) >= 4, what="the pool")
        stop = threading.Event()
        clients = [threading.Thread(target=client_loop, args=(server, stop, told, errors))
                   for _ in range(4)]
        for t in clients:
            t.start()
        rng = random.Random(16)
        kills = 0
        deadline = time.monotonic() + max(60, KILLS)
        while kills < KILLS and time.monotonic() < deadline:
            time.sleep(rng.uniform(0.01, 0.08))
            busy = [(pid, title) for pid, title in server.children().items() if "127.0.0.1 " in title]
            if not busy:
                continue
            pid, title = rng.choice(busy)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            kills += 1
            phases[title.rsplit(" ", 1)[-1]] += 1
        stop.set()
        for t in clients:
            t.join(30)
        # the pool is still whole and still delivers
        with server.client() as c:
            assert c.send_message("a@b.test", ["u@example.test"], "Subject: after\n\nok")[0] == 250
    delivered = collections.Counter()
    new = os.path.join(srv.maildir, "new")
    for name in os.listdir(new):
        with open(os.path.join(new, name), "rb") as fh:
            match = re.search(rb"^Subject: ([0-9a-f]{32})$", fh.read(), re.M)
        if match:
            delivered[match.group(1).decode()] += 1
    accepted = {m for m, code in told.items() if code == 250}
    lost = accepted - set(delivered)
    unconfirmed = set(delivered) - accepted            # delivered, client never heard 250
    leftovers = len(os.listdir(os.path.join(srv.maildir, "tmp")))
    print(f"\n{kills} kills (phases {dict(phases)}), {len(told)} messages: {len(accepted)} answered 250, "
          f"{len(lost)} of them lost, {len(unconfirmed)} delivered without a 250 reaching the "
          f"client, {sum(n - 1 for n in delivered.values())} duplicates, {leftovers} files "
          f"left in maildir/tmp; client errors {dict(errors)}")
    assert kills >= KILLS * 0.9
    assert not lost, lost
    assert len(phases) >= 3, phases
