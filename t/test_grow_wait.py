"""--grow-wait: a pool of at least --idle-children does not grow while its busy
children free up fast enough for the clients that wait (quick local sessions);
it grows as before when sessions last (remote clients, silent ones)."""

import threading
import time

import pytest

from qpsmtpd_py.server.scoreboard import BUSY, IDLE, MIN_SESSION, Scoreboard

from serverproc import Server, wait_until


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.mark.no_services
def test_turnover_from_each_busy_childs_session_lengths():
    clock = Clock()
    board = Scoreboard(4, clock=clock)
    slots = [board.claim() for _ in range(3)]
    assert board.turnover(slots) == (0, 0.0)                  # nothing busy
    board.mark(slots[0], BUSY, "127.0.0.1")
    board.mark(slots[1], BUSY, "127.0.0.2")
    assert board.turnover(slots) == (2, pytest.approx(2 / MIN_SESSION))   # just begun
    clock.now += 0.01
    # seen midway: each is expected to last twice its age, 0.02 s: 50 a second each
    assert board.turnover(slots) == (2, pytest.approx(100))
    board.mark(slots[0], BUSY, "127.0.0.1")                   # marked again: same session
    assert board.turnover(slots) == (2, pytest.approx(100))
    clock.now += 0.99
    board.mark(slots[0], IDLE)                                # it lasted 1 s
    board.mark(slots[0], BUSY, "127.0.0.3")
    clock.now += 0.01
    # slot 0: its previous session (1 s) counts over its young one; slot 1, 1.01 s
    # old, is expected to last 2.02 s
    busy, rate = board.turnover(slots)
    assert busy == 2 and rate == pytest.approx(1 / 1.0 + 1 / 2.02)
    clock.now += 60
    board.mark(slots[2], BUSY, "127.0.0.4")
    board.mark(slots[2], IDLE)                                # a quick one: at least 1 ms
    board.mark(slots[2], BUSY, "127.0.0.4")
    # the two stuck children add almost nothing; the quick one sets the rate
    busy, rate = board.turnover(slots)
    assert busy == 3
    assert rate - 1 / MIN_SESSION == pytest.approx(1 / 120.02 + 1 / 122.02)


def _load(tmp_path, running):
    """A file in /proc/loadavg's format with `running` runnable tasks, for the master's
    QPSMTPD_LOADAVG: whether a CPU is free is then the test's choice, not the
    machine's (other tests and processes share its two CPUs)."""
    path = tmp_path / "loadavg"
    path.write_text(f"0.50 0.40 0.30 {running}/200 4242\n")
    return {"QPSMTPD_LOADAVG": str(path)}


CPUS_FREE, CPUS_BUSY = 1, 64     # runnable tasks: only the master; far more than CPUs


def _burst(server, clients, sessions):
    """`clients` threads, each sending `sessions` messages one after another; returns
    (reply codes, the most children seen while they ran)."""
    codes, most, done = [], [0], threading.Event()

    def sample():
        while not done.is_set():
            most[0] = max(most[0], len(server.children()))
            time.sleep(0.01)

    def deliver(n):
        for i in range(sessions):
            c = server.client()
            try:
                codes.append(c.send_message("a@b.test", ["u@example.test"],
                                            f"Subject: {n}.{i}\n\nbody")[0])
                c.cmd("QUIT")
            finally:
                c.close()

    sampler = threading.Thread(target=sample)
    sampler.start()
    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    done.set()
    sampler.join()
    return codes, most[0]


@pytest.mark.parametrize("grow_wait", ["2", "0"])
def test_quick_sessions_do_not_grow_a_pool_that_frees_up_in_time(mail_config, tmp_path,
                                                                grow_wait):
    """Nine clients, each sending twelve messages back to back, to a pool of three on
    busy CPUs: every session lasts milliseconds, so the three serve them all (no fork)
    within --grow-wait; with --grow-wait 0 the same burst forks children at once."""
    srv = mail_config(files={"loglevel": "6"})
    with Server("qpsmtpd-prefork", srv, "--children", "12", "--idle-children", "3",
                "--grow-wait", grow_wait, env=_load(tmp_path, CPUS_BUSY)) as server:
        wait_until(lambda: len(server.children()) == 3, what="3 children")
        codes, most = _burst(server, 9, 12)
        assert codes == [250] * 108
        if grow_wait == "0":
            assert most >= 6, f"the pool did not grow ({most} children)"
        else:
            assert most == 3, f"the pool grew to {most} children"


def test_clients_that_hold_their_sessions_still_grow_the_pool(mail_config):
    """Sessions that last (a client that says nothing after EHLO) make the estimate
    long: the pool grows for every waiting client, each greeted within a second."""
    srv = mail_config(files={"loglevel": "6"})
    with Server("qpsmtpd-prefork", srv, "--children", "10", "--idle-children", "2",
                "--grow-wait", "0.1") as server:
        wait_until(lambda: len(server.children()) == 2, what="2 children")
        clients, latencies = [], []
        try:
            for _ in range(6):
                started = time.monotonic()
                c = server.client()              # the greeting is read
                latencies.append(time.monotonic() - started)
                c.ehlo()
                clients.append(c)
            assert max(latencies) < 1.0, latencies
            wait_until(lambda: len(server.children()) >= 8, 2.0, what="2 spare children again")
        finally:
            for c in clients:
                c.close()


@pytest.mark.parametrize("cpus", ["free", "busy"])
def test_a_pool_of_slow_talkers_grows_while_a_cpu_is_free(mail_config, tmp_path, cpus):
    """Clients that pause before each command (a remote MTA's round trips) keep their
    children waiting, not working: with a CPU free the master forks even though, by
    the turnover alone (--grow-wait 5 s), the three children would do; with the CPUs
    busy it does not, and the three serve everyone."""
    srv = mail_config(files={"loglevel": "6"})
    load = _load(tmp_path, CPUS_FREE if cpus == "free" else CPUS_BUSY)
    with Server("qpsmtpd-prefork", srv, "--children", "12", "--idle-children", "3",
                "--grow-wait", "5", env=load) as server:
        wait_until(lambda: len(server.children()) == 3, what="3 children")
        codes, most, stop = [], [0], threading.Event()

        def talk():
            while not stop.is_set():
                c = server.client()
                try:
                    for line in ("EHLO client.example.test", "MAIL FROM:<a@b.test>",
                                 "RCPT TO:<u@example.test>", "DATA"):
                        time.sleep(0.015)
                        c.cmd(line)
                    time.sleep(0.015)
                    codes.append(c.cmd("Subject: slow\r\n\r\nbody\r\n.")[0])
                    c.cmd("QUIT")
                finally:
                    c.close()

        threads = [threading.Thread(target=talk) for _ in range(9)]
        for t in threads:
            t.start()
        try:
            deadline = time.monotonic() + (8 if cpus == "free" else 3)
            while time.monotonic() < deadline and most[0] < 9:
                most[0] = max(most[0], len(server.children()))
                time.sleep(0.05)
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        assert codes and set(codes) == {250}
        if cpus == "free":
            assert most[0] >= 9, f"the pool stayed at {most[0]} children"
        else:
            assert most[0] == 3, f"the pool grew to {most[0]} children"
