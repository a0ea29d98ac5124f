"""AUTH brute force slowed and cut off (issue 16 point 10), as Postfix and Haraka do:
per session each refused password after the first delays the reply (1, 2, 4 s ...,
at most auth_failure_delay_max) and the auth_max_failures-th ends the session with
421 4.7.0, logged with the client address; across sessions refused passwords are
counted per client IP in the shared store (LMDB, table auth_failures), so a client
that keeps reconnecting gets 421 to AUTH, without a try, for auth_failure_window
seconds. In-process sessions on the fake clock (the delays are the clock's sleeps),
then a real prefork server whose workers share the store."""

import base64

import pytest

from harness import Client
from serverproc import Server, wait_until

USER, PASSWORD = "alice@example.test", "right pw"
FILES = {"flat_auth_pw": f"{USER}:{PASSWORD}", "auth_allow_plaintext": "1", "loglevel": "6"}


def plain(user, password):
    return "AUTH PLAIN " + base64.b64encode(f"\0{user}\0{password}".encode()).decode()


@pytest.fixture
def auth_server(session_server, tmp_path):
    def make(**files):
        return session_server("auth/auth_flat_file", files={
            **FILES, "store_dir": str(tmp_path / "store"), **files})
    return make


@pytest.mark.no_services
def test_each_refused_password_waits_longer_then_421(auth_server, clock):
    srv = auth_server()
    d = srv.talk("EHLO c.test", plain(USER, "guess1"), plain(USER, "guess2"),
                 plain(USER, "guess3"), "NOOP")
    assert d.codes == [220, 250, 535, 535, 421]          # the third: cut off, NOOP unread
    assert "4.7.0" in d.pairs[-1][1] and "Too many failed authentication" in d.pairs[-1][1]
    assert clock.sleeps == [1, 2]                          # the first is free (a typo)
    assert "3 failed AUTH attempts from 192.0.2.10; disconnecting" in d.log


@pytest.mark.no_services
def test_the_delay_is_capped(auth_server, clock):
    srv = auth_server(auth_max_failures="0", auth_max_failures_ip="0",
                      auth_failure_delay="1", auth_failure_delay_max="4")
    d = srv.talk("EHLO c.test", *[plain(USER, f"guess{n}") for n in range(7)],
                 plain(USER, PASSWORD))
    assert d.codes == [220, 250] + [535] * 7 + [235]
    assert clock.sleeps == [1, 2, 4, 4, 4, 4]
    assert "reply delayed 4s" in d.log


@pytest.mark.no_services
def test_malformed_exchanges_count_but_are_not_delayed(auth_server, clock):
    srv = auth_server()
    d = srv.talk("EHLO c.test", "AUTH PLAIN !!", "AUTH LOGIN", "*", plain(USER, PASSWORD))
    assert d.codes == [220, 250, 501, 334, 501, 235]
    assert clock.sleeps == []


@pytest.mark.no_services
def test_a_client_that_reconnects_is_refused_auth_for_a_while(auth_server, clock):
    srv = auth_server(auth_max_failures_ip="4", auth_failure_window="600")
    for _ in range(2):                                     # two guesses per connection
        d = srv.talk("EHLO c.test", plain(USER, "guess"), plain(USER, "guess"), "QUIT")
        assert d.codes == [220, 250, 535, 535, 221]
    assert clock.sleeps == [1, 1]                          # each session's second guess
    d = srv.talk("EHLO c.test", plain(USER, PASSWORD), "NOOP")  # even the right password
    assert d.codes == [220, 250, 421], d.pairs
    assert "Too many failed authentication attempts from 192.0.2.10" in d.pairs[-1][1]
    assert "refused AUTH from 192.0.2.10: 4 failed attempts" in d.log
    other = srv.talk("EHLO c.test", plain(USER, PASSWORD), remote_ip="192.0.2.99")
    assert other.codes == [220, 250, 235]                  # another address is not touched
    clock.advance(601)                                     # the window is over
    d = srv.talk("EHLO c.test", plain(USER, PASSWORD))
    assert d.codes == [220, 250, 235]


def test_prefork_workers_share_the_count(mail_config, tmp_path):
    """Real processes: each session from 127.0.0.2 may land on another worker; the
    count is in the one LMDB store they share."""
    srv = mail_config("auth/auth_flat_file", files={
        **FILES, "auth_max_failures_ip": "3", "auth_failure_delay": "1",
        "auth_failure_delay_max": "1"})
    with Server("qpsmtpd-prefork", srv, "--children", "2", "--idle-children", "2") as server:
        wait_until(lambda: len(server.children()) == 2, what="2 children")
        first, second = _connect(server), _connect(server)     # at once: two workers
        for c in (first, second):
            c.ehlo()
        workers = {pid for pid, t in server.children().items() if "127.0.0.2" in t}
        assert len(workers) == 2, server.children()
        for n, c in enumerate((first, second, _connect(server))):
            if n == 2:
                c.ehlo()
            assert c.cmd(plain(USER, f"guess{n}"))[0] == 535
            assert c.cmd("QUIT")[0] == 221
            c.close()
        c = _connect(server)
        c.ehlo()
        code, text = c.cmd(plain(USER, PASSWORD))
        assert code == 421 and "from 127.0.0.2" in text, text
        assert c.closed()
        assert "refused AUTH from 127.0.0.2: 3 failed attempts" in server.log
        ok = _connect(server, "127.0.0.3")
        ok.ehlo()
        assert ok.cmd(plain(USER, PASSWORD))[0] == 235
        ok.close()


def _connect(server, ip="127.0.0.2"):
    import socket
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10, source_address=(ip, 0))
    client = Client(sock, timeout=10)
    assert client.read_reply()[0] == 220
    return client
