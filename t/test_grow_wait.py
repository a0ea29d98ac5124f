"""--grow-wait: a pool of at least --idle-children does not grow while its busy
children free up fast enough for the clients that wait (quick local sessions);
it grows as before when sessions last (remote clients, silent ones)."""

import threading
import time

import pytest

from qpsmtpd_py.server.scoreboard import BUSY, IDLE, Scoreboard

from serverproc import Server, wait_until


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.mark.no_services
def test_session_seconds_from_current_ages_and_previous_sessions():
    clock = Clock()
    board = Scoreboard(4, clock=clock)
    slots = [board.claim() for _ in range(3)]
    assert board.session_seconds(slots) == (0, None)          # nothing busy: nothing known
    board.mark(slots[0], BUSY, "127.0.0.1")
    board.mark(slots[1], BUSY, "127.0.0.2")
    clock.now += 0.01
    busy, seconds = board.session_seconds(slots)
    assert busy == 2 and seconds == pytest.approx(0.02)         # seen midway: twice the age
    board.mark(slots[0], BUSY, "127.0.0.1")                     # marked again: same session
    assert board.session_seconds(slots)[1] == pytest.approx(0.02)
    board.mark(slots[2], BUSY, "127.0.0.3")
    clock.now += 1.0
    board.mark(slots[2], IDLE)                                  # that one lasted 1 s
    for slot in slots[:2]:                                      # these two 1.01 s
        board.mark(slot, IDLE)
        board.mark(slot, BUSY, "127.0.0.4")
    clock.now += 0.01
    busy, seconds = board.session_seconds(slots)
    # young sessions now (twice their age: 0.02 s), but the previous ones lasted
    # about a second: the longer estimate counts, erring towards forking
    assert busy == 2 and seconds == pytest.approx((1.0 + 1.01 + 1.01) / 3)
    clock.now += 5.0
    assert board.session_seconds(slots)[1] == pytest.approx(10.02)   # 2 x mean age


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
def test_quick_sessions_do_not_grow_a_pool_that_frees_up_in_time(mail_config, grow_wait):
    """Nine clients, each sending twelve messages back to back, to a pool of three:
    every session lasts milliseconds, so the three serve them all (no fork) within
    --grow-wait; with --grow-wait 0 the same burst forks children at once."""
    srv = mail_config(files={"loglevel": "6"})
    with Server("qpsmtpd-prefork", srv, "--children", "12", "--idle-children", "3",
                "--grow-wait", grow_wait) as server:
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
