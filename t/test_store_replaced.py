"""The LMDB store deleted or replaced under a running server (issue 16 point 9):
noticed by the identity of data.mdb within IDENTITY_CHECK_SECONDS, refused
(StoreError: plugins fail closed) instead of silently recreated empty; a reload
adopts the store then in place."""

import os
import shutil
import signal
import time

import pytest

from qpsmtpd_py.helpers.store import IDENTITY_CHECK_SECONDS, Store, StoreError

from fakeclock import FakeClock
from harness import PLUGIN_DIRS
from serverproc import Server, wait_until


@pytest.mark.no_services
@pytest.mark.parametrize("how", ["removed", "replaced"])
def test_store_removed_or_replaced_is_refused_not_recreated(tmp_path, how):
    path = tmp_path / "store"
    clock = FakeClock()
    running = Store(str(path), clock=clock)
    running.adopt()
    running.table("t").set("k", "v")
    if how == "removed":
        shutil.rmtree(path)
    else:
        other = Store(str(tmp_path / "other"))
        other.table("t").set("k", "other")
        other.close()
        os.replace(tmp_path / "other" / "data.mdb", path / "data.mdb")
    clock.advance(IDENTITY_CHECK_SECONDS)
    with pytest.raises(StoreError, match=f"data.mdb was {how}"):
        running.table("t").get("k")
    with pytest.raises(StoreError, match=f"data.mdb was {how}"):     # and it stays refused
        running.table("t").incr("n")
    assert not (path / "data.mdb").exists() if how == "removed" else True
    # a forked worker inherits the identity: it refuses too (no empty store made)
    pid = os.fork()
    if pid == 0:
        try:
            running.table("t").get("k")
            os._exit(1)
        except StoreError:
            os._exit(0 if how == "replaced" or not (path / "data.mdb").exists() else 2)
        except BaseException:
            os._exit(3)
    assert os.waitpid(pid, 0)[1] == 0
    running.adopt()                       # what a restart or HUP does
    assert running.table("t").get("k") == (None if how == "removed" else b"other")


@pytest.mark.no_services
def test_store_dir_turned_into_a_file_is_a_store_error(tmp_path):
    """Not a NotADirectoryError escaping from os.stat: plugins and tools expect StoreError."""
    path = tmp_path / "store"
    clock = FakeClock()
    running = Store(str(path), clock=clock)
    running.adopt()
    running.table("t").set("k", "v")
    shutil.rmtree(path)
    path.write_text("not a store\n")
    clock.advance(IDENTITY_CHECK_SECONDS)
    with pytest.raises(StoreError, match="data.mdb was removed"):
        running.table("t").get("k")
    with pytest.raises(StoreError, match=f"store_dir {path}"):       # and it stays refused
        running.table("t").set("k", "w")
    assert path.read_text() == "not a store\n"


def test_spam_gourmet_fails_closed_when_the_store_is_deleted(make_config, tmp_path):
    store_dir = tmp_path / "store"
    srv = make_config(plugins=["spam_gourmet", "rcpt_ok", "queue/maildir {maildir}"],
                      files={"rcpthosts": "example.test", "store_dir": str(store_dir),
                             "loglevel": "6", "plugin_dirs": PLUGIN_DIRS})
    with Server("qpsmtpd-prefork", srv, "--children", "6", "--idle-children", "3") as server:
        wait_until(lambda: len(server.children()) == 3, what="3 children")
        with server.client() as c:
            assert c.send_message("a@b.test", ["steve.shop.1@example.test"], "Subject: 1\n\nx")[0] == 250
        shutil.rmtree(store_dir)
        time.sleep(IDENTITY_CHECK_SECONDS + 0.1)       # a worker notices within a second
        # every worker, and new ones, refuse: the used-up address never takes mail again
        clients = [server.client() for _ in range(4)]
        for c in clients:
            c.ehlo()
            assert c.cmd("MAIL FROM:<a@b.test>")[0] == 250
            code, text = c.cmd("RCPT TO:<steve.shop.1@example.test>")
            assert code == 450, text
        for c in clients:
            c.close()
        assert not (store_dir / "data.mdb").exists()
        assert "data.mdb was removed while the server ran" in server.log
        # a reload adopts the (new, empty) store: the admin chose to start afresh
        server.signal(signal.SIGHUP)
        wait_until(lambda: "reload done" in server.log, what="the reload")
        wait_until(lambda: (store_dir / "data.mdb").exists(), what="the new store")
        with server.client() as c:
            assert c.send_message("a@b.test", ["steve.shop.1@example.test"], "Subject: 2\n\nx")[0] == 250


@pytest.mark.no_services
def test_store_is_checked_once_a_second_not_at_every_use(tmp_path):
    """A worker compares data.mdb's identity when it opens the store and then at most
    once a second (one stat a second, not one per read): within that second it still
    reads the store it has open, then it refuses; a new process refuses at once."""
    path = tmp_path / "store"
    clock = FakeClock()
    running = Store(str(path), clock=clock)
    running.adopt()
    running.table("t").set("k", "v")
    assert running.table("t").get("k") == b"v"
    shutil.rmtree(path)
    clock.advance(IDENTITY_CHECK_SECONDS - 0.1)
    assert running.table("t").get("k") == b"v"                  # within the second
    clock.advance(0.1)
    with pytest.raises(StoreError, match="data.mdb was removed"):
        running.table("t").get("k")
    pid = os.fork()
    if pid == 0:                          # a worker forked now: refused at its first use
        try:
            running.table("t").get("k")
            os._exit(1)
        except StoreError:
            os._exit(0)
        except BaseException:
            os._exit(3)
    assert os.waitpid(pid, 0)[1] == 0
