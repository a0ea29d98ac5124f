"""The qpsmtpd-store command-line tool, run as a real process."""

import os
import subprocess
import sys
import time

import pytest

from qpsmtpd_py.helpers.store import Store

from fakeclock import FakeClock

TOOL = os.path.join(os.path.dirname(sys.executable), "qpsmtpd-store")

pytestmark = pytest.mark.no_services     # the tool and a store directory only: the fast lane


def tool(*args, **kw):
    return subprocess.run([TOOL, *args], capture_output=True, text=True, timeout=30, **kw)


def test_help_explains_every_subcommand():
    out = tool("--help")
    assert out.returncode == 0
    for word in ("list-tables", "list", "get", "set", "delete", "expire", "--dir", "--config",
                 "store_dir"):
        assert word in out.stdout
    sub = tool("set", "--help")
    assert "--ttl" in sub.stdout and "VALUE" in sub.stdout.upper()


def test_set_get_list_delete_expire(tmp_path):
    d = ["--dir", str(tmp_path / "store")]
    assert tool(*d, "set", "karma", "192.0.2.1", "-3").returncode == 0
    assert tool(*d, "set", "karma", "192.0.2.10", "5", "--ttl", "3600").returncode == 0
    assert tool(*d, "set", "karma", "198.51.100.7", "1").returncode == 0
    assert tool(*d, "set", "grey", "k\x01", "soon", "--ttl", "2").returncode == 0
    out = tool(*d, "get", "karma", "192.0.2.1")
    assert (out.returncode, out.stdout) == (0, "-3\n")
    assert tool(*d, "get", "karma", "missing").returncode == 1

    out = tool(*d, "list", "karma", "--prefix", "192.0.2.")
    rows = [line.split("\t") for line in out.stdout.splitlines()]
    assert [r[:2] for r in rows] == [["192.0.2.1", "-3"], ["192.0.2.10", "5"]]
    assert rows[0][2] == "-" and rows[1][2].startswith(time.strftime("%Y-"))
    assert tool(*d, "list", "grey").stdout.startswith("k\\x01\tsoon\t20")

    out = tool(*d, "list-tables")
    assert out.stdout == "grey\t1\nkarma\t3\n"
    # the same entry as if it had been set an hour ago: expired, without waiting
    written_before = Store(d[1], clock=FakeClock(start=time.time() - 3600))
    written_before.table("grey").set("k\x01", "soon", ttl=2)
    written_before.close()
    assert tool(*d, "get", "grey", "k\x01").returncode == 1           # expired
    assert tool(*d, "expire", "karma").stdout == "0\n"
    assert tool(*d, "expire").stdout == "1\n"
    assert tool(*d, "list-tables").stdout == "grey\t0\nkarma\t3\n"

    assert tool(*d, "delete", "karma", "192.0.2.1").returncode == 0
    assert tool(*d, "delete", "karma", "192.0.2.1").returncode == 1
    assert tool(*d, "list", "nosuchtable").stdout == ""


def test_config_dir_names_the_store(tmp_path):
    conf = tmp_path / "config"
    conf.mkdir()
    (conf / "store_dir").write_text(f"# where\n{tmp_path}/fromconfig\n")
    assert tool("--config", str(conf), "set", "t", "k", "v").returncode == 0
    assert os.path.exists(tmp_path / "fromconfig" / "data.mdb")
    assert tool("--dir", str(tmp_path / "fromconfig"), "get", "t", "k").stdout == "v\n"
    env = dict(os.environ, QPSMTPD_CONFIG=str(conf))
    assert tool("get", "t", "k", env=env, cwd=str(tmp_path)).stdout == "v\n"


def test_errors_are_clear(tmp_path):
    out = tool("--dir", str(tmp_path / "absent"), "list-tables")
    assert out.returncode == 2
    assert f"store_dir {tmp_path}/absent does not exist" in out.stderr
    assert not os.path.exists(tmp_path / "absent")                  # reading creates nothing
    (tmp_path / "file").write_text("")
    out = tool("--dir", str(tmp_path / "file" / "s"), "set", "t", "k", "v")
    assert out.returncode == 2 and f"store_dir {tmp_path}/file/s: cannot create it" in out.stderr
    out = tool("--dir", str(tmp_path / "s"), "set", "t", "k", "v", "--ttl", "0")
    assert out.returncode == 2 and "--ttl" in out.stderr
    assert tool("--dir", str(tmp_path), "frobnicate").returncode == 2


def test_root_leaves_files_to_the_directory_owner(tmp_path):
    if os.geteuid() != 0:
        return
    store = tmp_path / "owned"
    store.mkdir()
    os.chown(store, 65534, 65534)
    assert tool("--dir", str(store), "set", "t", "k", "v").returncode == 0
    for name in ("data.mdb", "lock.mdb"):
        assert os.stat(store / name).st_uid == 65534
