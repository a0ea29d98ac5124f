"""check_validrcptto_cdb with real cdb files built by tinycdb's `cdb` tool."""

import os
import subprocess

import pytest

from test_policy_lists import envelope
from tools import require_tool

NO_MAILBOX = (550, "5.1.1 Sorry, no mailbox here by that name. (#5.1.1)")
KEYS = ["alice@example.test", "bob-default@example.test", "list-a-default@example.test",
        "@catchall.test", "carol@other.test"]


@pytest.fixture(autouse=True)
def cdb_works():
    require_tool("cdb")


def make_cdb(path, keys, native=False):
    """Build a cdb the way an admin does: `cdb -c -m` ("key value" lines), or the
    native `+klen,vlen:key->value` input."""
    if native:
        data = "".join(f"+{len(k)},1:{k}->1\n" for k in keys) + "\n"
        subprocess.run(["cdb", "-c", str(path)], input=data.encode(), check=True)
    else:
        subprocess.run(["cdb", "-c", "-m", str(path)], input="\n".join(keys).encode() + b"\n", check=True)


@pytest.fixture
def server(mail_config):
    def make(line, files=None):
        return mail_config(line, files={"rcpthosts": "example.test\ncatchall.test\nother.test\nunlisted.test",
                                        "loglevel": "6", **(files or {})})
    return make


def test_validrcptto_cdb_default_location(server):
    srv = server("check_validrcptto_cdb")
    make_cdb(os.path.join(srv.dir, "validrcptto.cdb"), KEYS)
    with srv.session() as c:
        c.ehlo()
        replies = envelope(c, "s@far.test", "Alice@Example.test", "bob-anything@example.test",
                           "bob-a-b@example.test", "list-a-x@example.test", "whoever@catchall.test",
                           "carol@other.test", "anyone@unlisted.test", "bob@example.test",
                           "list-b@example.test", "dave@other.test", "postmaster")
        assert [r[0] for r in replies[:7]] == [250] * 7, replies
        assert replies[7:10] == [NO_MAILBOX] * 3, "bob@ is not bob-default@; list-b is not list-a-*"
        assert replies[10][0] == 250
    log = c.stderr
    assert "pass, bob-default@example.test is in validrcptto" in log
    assert "skip, unlisted.test is not in validrcptto" in log


def test_validrcptto_cdb_path_argument_and_rebuild(server, tmp_path):
    path = tmp_path / "valid.cdb"
    make_cdb(path, KEYS, native=True)
    srv = server(f"check_validrcptto_cdb {path}")
    with srv.session() as c:
        c.ehlo()
        assert envelope(c, "s@far.test", "alice@example.test", "new@example.test") == [
            (250, "2.1.5 <alice@example.test>, recipient ok"), NO_MAILBOX]
        make_cdb(path, KEYS + ["new@example.test"])      # cdb -c renames over the old file
        assert c.cmd("RCPT TO:<new@example.test>")[0] == 250


def test_validrcptto_cdb_ext_sep_and_missing_file(server, tmp_path):
    path = tmp_path / "valid.cdb"
    make_cdb(path, ["bob+default@example.test"])
    srv = server(f"check_validrcptto_cdb file {path} ext_sep +")
    with srv.session() as c:
        c.ehlo()
        assert [r[0] for r in envelope(c, "s@far.test", "bob+x@example.test", "bob-x@example.test")] \
            == [250, 550]
    srv.set_plugins([f"check_validrcptto_cdb file {tmp_path}/gone.cdb", "rcpt_ok"])
    with srv.session() as c:
        c.ehlo()
        assert envelope(c, "s@far.test", "nobody@example.test")[0][0] == 250, "fail open"
    assert "gone.cdb: no such file; not checking" in c.stderr
