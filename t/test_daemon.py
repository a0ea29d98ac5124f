"""Daemon duties of qpsmtpd-prefork and qpsmtpd-forkserver: options, pid file,
detaching, privilege drop, start-up errors; plus the listen-address parser."""

import grp
import os
import pwd
import shutil
import signal
import subprocess
import tempfile

import pytest

from harness import ConfigDir, bin_path, free_port
from serverproc import PLUGIN_DIR, Server, alive, children_of, wait_until

from qpsmtpd_py.server.daemon import DaemonError, PidFile
from qpsmtpd_py.server.listen import listen_specs, parse_address

FILES = {"rcpthosts": "example.test", "loglevel": "6"}
RDNS_PLUGIN = '''
from qpsmtpd_py.constants import DENY
from qpsmtpd_py.plugin import Plugin

class ShowRdns(Plugin):
    def hook_connect(self, transaction):
        return DENY, f"rdns={self.app.rdns}"
'''


def run(program, *args, env=None, timeout=20):
    return subprocess.run([bin_path(program), *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


# -- listen addresses -----------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1", ("127.0.0.1", 25)),
    ("127.0.0.1:2525", ("127.0.0.1", 2525)),
    ("[::1]", ("::1", 25)),
    ("[::]:465", ("::", 465)),
    ("::1", ("::1", 25)),
    ("localhost:26", ("localhost", 26)),
    ("0.0.0.0", ("0.0.0.0", 25)),
])
def test_parse_listen_address(text, expected):
    assert parse_address(text, 25) == expected


@pytest.mark.parametrize("text", ["[::1", "[::1]x", "1.2.3.4:0", "1.2.3.4:99999", "host:port", ":25"])
def test_bad_listen_address(text):
    with pytest.raises(ValueError):
        parse_address(text, 25)


def test_listen_specs_cross_addresses_and_ports():
    assert listen_specs(["127.0.0.1", "[::1]:26"], [25, 2525], [465]) == [
        ("127.0.0.1", 25), ("127.0.0.1", 2525), ("127.0.0.1", 465), ("::1", 26), ("::1", 465)]


# -- pid file ----------------------------------------------------------------------------------
def test_pid_file_stale_pid_is_taken_over(tmp_path):
    path = str(tmp_path / "q.pid")
    with open(path, "w") as fh:
        fh.write(f"{os.getpid()}\n")             # alive, but not a qpsmtpd: stale
    pid_file = PidFile(path)
    pid_file.claim()
    pid_file.write(12345)
    assert open(path).read() == "12345\n"
    with pytest.raises(DaemonError, match="Found an already running qpsmtpd with pid 12345"):
        PidFile(path).claim()                    # the lock is held
    pid_file.remove()
    assert not os.path.exists(path)


def test_pid_file_path_must_be_absolute_and_plain():
    for bad in ("relative.pid", "/tmp/x y.pid", "/tmp/$x.pid"):
        with pytest.raises(DaemonError):
            PidFile(bad)


def test_running_server_blocks_a_second_one(make_config):
    srv = make_config(files=FILES)
    pid_path = os.path.join(srv.tmp, "q.pid")
    with Server("qpsmtpd-forkserver", srv, "--pid-file", pid_path) as server:
        result = run("qpsmtpd-forkserver", "--allow-root", "--config", srv.dir, "-l",
                     f"127.0.0.1:{free_port()}", "--pid-file", pid_path, env=srv.env())
        assert result.returncode == 1
        assert f"Found an already running qpsmtpd with pid {server.pid}." in result.stderr
        # a pid file without our lock (written by Perl qpsmtpd, say) naming a live qpsmtpd
        other = os.path.join(srv.tmp, "perl.pid")
        with open(other, "w") as fh:
            fh.write(f"{server.pid}\n")
        with pytest.raises(DaemonError, match=f"already running qpsmtpd with pid {server.pid}"):
            PidFile(other).claim()
    assert not os.path.exists(pid_path)


def test_detach_writes_the_daemons_pid_and_term_removes_it(make_config):
    srv = make_config(files=FILES)
    pid_path = os.path.join(srv.tmp, "detached.pid")
    port = free_port()
    result = run("qpsmtpd-prefork", "--allow-root", "--config", srv.dir, "--detach",
                 "--pid-file", pid_path, "-l", f"127.0.0.1:{port}", "--children", "2", env=srv.env())
    assert result.returncode == 0, result.stderr
    pid = int(wait_until(lambda: os.path.exists(pid_path) and open(pid_path).read().strip(),
                         what="the pid file"))
    try:
        wait_until(lambda: len(children_of(pid)) == 2, what="two children")
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        assert int(fields[3]) != os.getsid(0)      # a session of its own (setsid)
        assert int(fields[1]) != os.getpid()       # not our child: it forked away
        assert os.readlink(f"/proc/{pid}/cwd") == "/"
        assert os.readlink(f"/proc/{pid}/fd/0") == "/dev/null"
        from harness import Client
        with Client.connect("127.0.0.1", port) as c:
            assert c.code == 220
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not alive(pid), what="the daemon to exit")
    assert not os.path.exists(pid_path)


# -- users ---------------------------------------------------------------------------------------
def test_prefork_as_root_needs_user(make_config):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    srv = make_config(files=FILES)
    result = run("qpsmtpd-prefork", "--config", srv.dir, "-l", f"127.0.0.1:{free_port()}", env=srv.env())
    assert result.returncode == 64
    assert "--user is required" in result.stderr


@pytest.mark.parametrize("program", ["qpsmtpd-prefork", "qpsmtpd-forkserver"])
def test_user_switch_after_bind(program):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    user = pwd.getpwnam("nobody")
    base = tempfile.mkdtemp(prefix="qpt-user-")
    try:
        os.chmod(base, 0o755)
        # t_lateimport imports a stdlib module nothing else does: a Python under
        # /root is unreadable after the switch, so plugins are imported before it
        test_plugins = os.path.join(os.path.dirname(os.path.abspath(__file__)), "plugins")
        srv = ConfigDir(_Path(base), plugins=["t_lateimport", "rcpt_ok", "queue/maildir {maildir}"],
                        files={**FILES, "plugin_dirs": [test_plugins, PLUGIN_DIR]})
        for path in (srv.maildir, os.path.join(base, "spool")):
            os.makedirs(path, exist_ok=True)
            os.chown(path, user.pw_uid, user.pw_gid)
        args = ["--user", "nobody", *(["--children", "1"] if program.endswith("prefork") else [])]
        with Server(program, srv, *args, allow_root=False) as server:
            with server.client() as c:
                assert c.send_message("a@b.test", ["u@example.test"], "Subject: x\n\nas nobody")[0] == 250
                pids = [server.pid, *server.children()]
                for pid in pids:
                    status = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status"))
                    assert status["Uid"].split() == [str(user.pw_uid)] * 4
                    assert status["Gid"].split() == [str(user.pw_gid)] * 4
                    groups = sorted(int(g) for g in status["Groups"].split())
                    assert groups == sorted(set(os.getgrouplist("nobody", user.pw_gid)))
            (msg,) = srv.messages()
            assert os.stat(os.path.join(srv.maildir, "new", os.listdir(os.path.join(srv.maildir, "new"))[0])).st_uid == user.pw_uid
            assert f"as nobody (uid {user.pw_uid}, groups {grp.getgrgid(user.pw_gid).gr_name}" in server.log
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_redis_store_works_after_the_user_switch():
    """The Redis client reads its package metadata when it connects (redis-py >= 5),
    which imports email.parser: in a child, after --user, a Python under /root cannot
    read it, and the store failed (greylisting silently off). The master loads it first."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    host, port = os.environ.get("QPT_REDIS_HOST"), os.environ.get("QPT_REDIS_PORT")
    if not (host and port):
        if os.environ.get("CI") == "true":
            pytest.fail("QPT_REDIS_HOST/QPT_REDIS_PORT not set: the redis component of t/services")
        pytest.skip("no test Redis")
    base = tempfile.mkdtemp(prefix="qpt-user-redis-")
    try:
        os.chmod(base, 0o755)
        srv = ConfigDir(_Path(base), plugins=["greylisting", "rcpt_ok", "queue/discard"],
                        files={**FILES, "store_backend": "redis", "store_redis": f"{host}:{port}",
                               "store_redis_prefix": f"user-switch-{os.getpid()}-{free_port()}:"})
        user = pwd.getpwnam("nobody")
        os.makedirs(os.path.join(base, "spool"), exist_ok=True)
        os.chown(os.path.join(base, "spool"), user.pw_uid, user.pw_gid)
        with Server("qpsmtpd-prefork", srv, "--user", "nobody", "--children", "1", "-H",
                    allow_root=False) as server:
            with server.client() as c:
                c.ehlo()
                code, text = c.cmd("MAIL FROM:<a@b.test>")     # a new client: deferred
                assert code == 450, (code, text, server.log)
            assert "450 4.7.1 This mail is temporarily denied (greylisting)" in server.log
            assert "Traceback" not in server.log, server.log
    finally:
        shutil.rmtree(base, ignore_errors=True)


class _Path(str):
    """Just enough of pathlib for ConfigDir outside pytest's tmp_path."""

    def __truediv__(self, other):
        return _Path(os.path.join(self, other))


def test_unknown_user_is_refused(make_config):
    srv = make_config(files=FILES)
    result = run("qpsmtpd-forkserver", "--config", srv.dir, "--user", "no-such-user-x",
                 "-l", f"127.0.0.1:{free_port()}", env=srv.env())
    assert result.returncode == 1
    assert "unable to determine uid/gid for no-such-user-x" in result.stderr


# -- start-up errors and options ------------------------------------------------------------------
@pytest.mark.parametrize("program", ["qpsmtpd-prefork", "qpsmtpd-forkserver"])
def test_broken_config_stops_start_up_with_file_and_line(make_config, program):
    srv = make_config(plugins=["rcpt_ok", "no_such_plugin"], files=FILES)
    result = run(program, "--allow-root", "--config", srv.dir, "-l", f"127.0.0.1:{free_port()}",
                 env=srv.env())
    assert result.returncode == 78
    assert f"{srv.dir}/plugins:2" in result.stderr and "no_such_plugin" in result.stderr


def test_failed_start_leaves_no_pid_file(make_config):
    srv = make_config(plugins=["no_such_plugin"], files=FILES)
    pid_path = os.path.join(srv.tmp, "failed.pid")
    result = run("qpsmtpd-prefork", "--allow-root", "--config", srv.dir, "--pid-file", pid_path,
                 "-l", f"127.0.0.1:{free_port()}", env=srv.env())
    assert result.returncode == 78
    assert not os.path.exists(pid_path)


def test_port_in_use_is_reported(make_config):
    srv = make_config(files=FILES)
    with Server("qpsmtpd-forkserver", srv) as server:
        result = run("qpsmtpd-prefork", "--allow-root", "--config", srv.dir, "-l",
                     f"127.0.0.1:{server.port}", env=srv.env())
        assert result.returncode == 1
        assert f"cannot listen on 127.0.0.1:{server.port}: Address already in use" in result.stderr


@pytest.mark.parametrize("program", ["qpsmtpd-prefork", "qpsmtpd-forkserver"])
def test_help_and_version(program):
    result = run(program, "--help")
    assert result.returncode == 0
    for option in ("--listen-address", "--port", "--max-from-ip", "--user", "--pid-file",
                   "--detach", "--no-rdns", "--config", "--smtps-port", "--graceful-timeout"):
        assert option in result.stdout
    if program.endswith("prefork"):
        for option in ("--children", "--idle-children", "--max-requests", "--renice-parent",
                       "--pretty-child", "--interface", "--debug", "--quiet"):
            assert option in result.stdout
    else:
        assert "--limit-connections" in result.stdout
    assert run(program, "--version").stdout.startswith(f"{program} (qpsmtpd_py) ")


@pytest.mark.parametrize("flag, expected", [((), "rdns=True"), (("-H",), "rdns=False")])
def test_no_rdns_reaches_the_app(make_config, tmp_path, flag, expected):
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    (plugin_dir / "show_rdns.py").write_text(RDNS_PLUGIN)
    srv = make_config(plugins=["show_rdns"], files={"plugin_dirs": [str(plugin_dir), PLUGIN_DIR]})
    with Server("qpsmtpd-prefork", srv, "--children", "1", *flag) as server:
        with server.client() as c:
            assert (c.code, c.text) == (550, expected)
