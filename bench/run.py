#!/usr/bin/env python3
"""Benchmark: qpsmtpd_py (prefork, forkserver) against Debian's Perl qpsmtpd 0.94,
driven by Postfix's smtp-source on loopback. Run by hand (it is not a test):

    .venv/bin/python bench/run.py                 # about 15 minutes
    .venv/bin/python bench/run.py --quick         # fewer messages, about 5 minutes
    .venv/bin/python bench/run.py --servers floor,py-prefork --only "s=50"

Reports messages/second and server CPU milliseconds per message (run time of the
server's whole process tree, reaped children included, from /proc), PSS with 50 busy
children, and the memory of a child receiving a 50 MB message. Every server gets the
same plugins (relay, count_unrecognized_commands, dont_require_anglebrackets, rcpt_ok,
queue/discard), runs as nobody, and does no reverse DNS: ours with -H, Perl (which
ignores -H) through bench/perl/NoDNS.pm. The whole run happens in a network namespace
that has only loopback (unshare -n), so no packet can leave the machine.
"""

import argparse
import os
import pwd
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "t"))
import mta  # noqa: E402  (t/mta.py: the private Postfix config, shared with the tests)
BIN = os.path.dirname(sys.executable)
PLUGINS = ["relay", "count_unrecognized_commands", "dont_require_anglebrackets", "rcpt_ok",
           "queue/discard"]
PERL_DISCARD = "# queue/discard for the benchmark\nsub hook_queue { return (OK, \"Queued!\") }\n"
CLK_TCK = os.sysconf("SC_CLK_TCK")
USER = "nobody"
GROW_IDLE = 5            # the growing pool: --children 60 --idle-children 5
TINY_DNS_PORT = 5399     # bench/tiny_dns.py inside the namespace
AIOSMTPD_PYTHON = os.environ.get("QPB_AIOSMTPD_PYTHON", "/tmp/qpb-aiosmtpd/bin/python")
HARAKA_PREFIX = os.environ.get("QPB_HARAKA", "/tmp/qpb-haraka")   # cd DIR && npm install Haraka
SOURCE = ["smtp-source", "-f", "src@example.test", "-t", "rcpt@example.test", "-M", "client.example.test"]


# -- /proc ------------------------------------------------------------------------------------
def process_tree(root):
    """root and all its descendants (zombies included)."""
    children = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def cpu_ms(root):
    """CPU time of the tree: run time of every live task (/proc/PID/task/*/schedstat,
    nanoseconds) plus cutime+cstime (reaped children, accumulated exactly by the
    kernel). utime/stime of live processes are not used: /proc shows them truncated
    to 10 ms ticks each, which loses most of a short-lived worker's time."""
    ns, ticks = 0, 0
    for pid in process_tree(root):
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            ticks += int(fields[13]) + int(fields[14])
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/schedstat") as fh:
                    ns += int(fh.read().split()[0])
        except (OSError, IndexError, ValueError):
            continue
    return ns / 1e6 + ticks * 1000.0 / CLK_TCK


def rollup(pid, field="Pss"):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])          # kB
    except OSError:
        pass
    return 0


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


# -- servers -------------------------------------------------------------------------------------
class Server:
    def __init__(self, name, argv, port, env, workdir, pool):
        self.name, self.argv, self.port, self.env, self.workdir = name, argv, port, env, workdir
        self.pool = pool             # children a prefork server keeps (None: forkserver)
        self.proc = None

    def start(self):
        log = open(os.path.join(self.workdir, f"{self.name}.log"), "ab")
        self.proc = subprocess.Popen(self.argv, env=self.env, cwd=self.workdir, stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {self.workdir}/{self.name}.log")
            if self._greets() and (self.pool is None or len(process_tree(self.proc.pid)) > self.pool):
                return self
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not come up; see {self.workdir}/{self.name}.log")

    def _greets(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                s.settimeout(10)
                ok = s.recv(512).startswith(b"220")
                s.sendall(b"QUIT\r\n")
                s.recv(512)
                return ok
        except OSError:
            return False

    def settle(self):
        """Wait until a prefork pool is full again (children retire after 100 sessions)."""
        deadline = time.time() + 20
        while self.pool and time.time() < deadline and len(process_tree(self.proc.pid)) <= self.pool:
            time.sleep(0.1)
        time.sleep(0.3)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class PostfixServer(Server):
    """A private Postfix (t/mta.py's private_postfix: own config and queue) whose smtpd
    listens on 127.0.0.1:port, accepts mail for example.test from 127.0.0.0/8 and
    delivers it to the discard transport; no DNS (smtpd_peername_lookup = no). CPU is
    the tree under Postfix's master (smtpd, cleanup, qmgr, trivial-rewrite, discard)."""

    def __init__(self, name, port, base, pool):
        super().__init__(name, None, port, None, base, None)
        self.dir = os.path.join(base, f"postfix-{port}")
        self.etc, self.spool, self.maillog = mta.private_postfix(self.dir, {
            "myhostname": "postfix.example.test", "relay_domains": "example.test",
            "relay_transport": "discard:", "default_transport": "discard:",
            "local_transport": "discard:", "smtpd_peername_lookup": "no",
            "message_size_limit": "0", "default_process_limit": str(pool + 10),
            "smtpd_client_connection_count_limit": "0",
            "smtpd_client_connection_rate_limit": "0", "anvil_rate_time_unit": "60s",
        }, [f"127.0.0.1:{port}/inet=127.0.0.1:{port} inet n - n - {pool} smtpd"])

    def start(self):
        subprocess.run(["postfix", "-c", self.etc, "start"], check=True, capture_output=True,
                       stdin=subprocess.DEVNULL)
        deadline = time.time() + 30
        pid = 0
        while time.time() < deadline and not (pid and self._greets()):
            time.sleep(0.2)
            pid = mta.postfix_master_pid(self.spool, 0) or pid
        if not pid:
            raise RuntimeError(f"postfix did not come up; see {self.maillog}")
        self.proc = _Pid(pid)
        return self

    def stop(self):
        if self.proc:
            subprocess.run(["postfix", "-c", self.etc, "stop"], capture_output=True)
            self.proc = None


class _Pid:
    """What Server needs of a Popen for a daemon we did not start ourselves."""

    def __init__(self, pid):
        self.pid = pid

    def poll(self):
        return None if os.path.exists(f"/proc/{self.pid}") else 0


def haraka_server(name, port, base, env):
    """Haraka (npm) with `haraka -i`'s default config plus bench/haraka/: no PTR lookup,
    rcpt_to.in_host_list (example.test), queue/discard; one worker per core (nodes=cpus,
    its documented way to scale), running as nobody."""
    haraka = os.path.join(HARAKA_PREFIX, "node_modules", "Haraka", "bin", "haraka")
    if not os.path.exists(haraka):
        raise SystemExit(f"no {haraka}: mkdir -p {HARAKA_PREFIX} && cd {HARAKA_PREFIX} && "
                         "npm install Haraka (or set QPB_HARAKA)")
    directory = os.path.join(base, f"haraka-{port}")
    subprocess.run(["node", haraka, "-i", directory], check=True, capture_output=True)
    shutil.copytree(os.path.join(HERE, "haraka"), directory, dirs_exist_ok=True)
    with open(os.path.join(directory, "config", "smtp.ini"), "w") as fh:
        fh.write(f"[main]\nlisten=127.0.0.1:{port}\nuser={USER}\ngroup=nogroup\nnodes=cpus\n")
    ini = os.path.join(directory, "config", "connection.ini")
    with open(ini) as fh:
        text = fh.read()
    with open(ini, "w") as fh:             # the memory run's 50 MB message (default 25 MB)
        fh.write(text.replace("bytes=26214400", "bytes=104857600"))
    argv = ["node", haraka, "-c", directory]
    return Server(name, argv, port, dict(env, YES_REALLY_DO_DISCARD="1"), base, None)


def write_config(directory, spool, plugin_dirs=None, extra=None):
    os.makedirs(directory, exist_ok=True)
    files = {"me": "bench.example.test", "rcpthosts": "example.test", "loglevel": "4",
             "spool_dir": spool, "plugins": "\n".join(PLUGINS), **(extra or {})}
    if plugin_dirs:
        files["plugin_dirs"] = "\n".join(plugin_dirs)
    for name, text in files.items():
        with open(os.path.join(directory, name), "w") as fh:
            fh.write(text + "\n")


def make_servers(base, names, pool, port0):
    nobody = pwd.getpwnam(USER)
    spool = {}
    for kind in ("py", "perl"):
        spool[kind] = os.path.join(base, f"spool-{kind}")
        os.makedirs(spool[kind], mode=0o700)
        os.chown(spool[kind], nobody.pw_uid, nobody.pw_gid)
    perl_plugins = os.path.join(base, "perl-plugins")
    os.makedirs(os.path.join(perl_plugins, "queue"))
    with open(os.path.join(perl_plugins, "queue", "discard"), "w") as fh:
        fh.write(PERL_DISCARD)
    write_config(os.path.join(base, "py-config"), spool["py"])
    # reverse DNS on: no resolver reachable (192.0.2.1 has no route in the namespace:
    # every lookup fails at once), or bench/tiny_dns.py answering on loopback
    write_config(os.path.join(base, "py-config-rdnsfail"), spool["py"], extra={"dns_servers": "192.0.2.1"})
    write_config(os.path.join(base, "py-config-rdns"), spool["py"],
                 extra={"dns_servers": f"127.0.0.1:{TINY_DNS_PORT}"})
    write_config(os.path.join(base, "perl-config"), spool["perl"],
                 ["/usr/share/qpsmtpd/plugins", perl_plugins])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TCP", "QPSMTPD", "RELAY"))}
    perl_env = dict(env, QPSMTPD_CONFIG=os.path.join(base, "perl-config"))
    perl = ["perl", "-T", "-w", "-I" + os.path.join(HERE, "perl"), "-MNoDNS"]
    pyconf = ["-H", "--config", os.path.join(base, "py-config")]
    servers = []
    for i, name in enumerate(names):
        port = port0 + i
        listen = ["--listen-address", "127.0.0.1", "--port", str(port), "--user", USER]
        if name == "py-prefork" or name.startswith("py-prefork-"):
            # py-prefork[-grow][-rdns|-rdnsfail][-nofront], e.g. py-prefork-grow-nofront
            flags = set(name.split("-")[2:])
            unknown = flags - {"grow", "rdns", "rdnsfail", "nofront"}
            if unknown or {"rdns", "rdnsfail"} <= flags:
                raise SystemExit(f"unknown server {name}")
            conf = pyconf
            for dns in ("rdns", "rdnsfail"):             # no -H: the engine looks up PTR
                if dns in flags:
                    conf = ["--config", os.path.join(base, "py-config-" + dns)]
            idle = GROW_IDLE if "grow" in flags else pool
            argv = [os.path.join(BIN, "qpsmtpd-prefork"), *listen, *conf,
                    "--children", str(pool), "--idle-children", str(idle), "--max-requests", "100"]
            if "nofront" in flags:                       # children accept() themselves
                argv.append("--no-front")
            servers.append(Server(name, argv, port, env, base, idle))
        elif name == "perl-prefork-grow":
            argv = [*perl, "/usr/bin/qpsmtpd-prefork", *listen,
                    "--children", str(pool), "--idle-children", str(GROW_IDLE)]
            servers.append(Server(name, argv, port, perl_env, base, GROW_IDLE))
        elif name == "smtp-sink":
            argv = ["smtp-sink", "-u", USER, f"127.0.0.1:{port}", "511"]
            servers.append(Server(name, argv, port, env, base, None))
        elif name == "aiosmtpd":
            argv = [AIOSMTPD_PYTHON, os.path.join(HERE, "aiosmtpd_discard.py"), str(port)]
            servers.append(Server(name, argv, port, env, base, None))
        elif name == "postfix":
            servers.append(PostfixServer(name, port, base, pool))
        elif name == "haraka":
            servers.append(haraka_server(name, port, base, env))
        elif name == "py-forkserver":
            argv = [os.path.join(BIN, "qpsmtpd-forkserver"), *listen, *pyconf,
                    "--limit-connections", str(pool)]
            servers.append(Server(name, argv, port, env, base, None))
        elif name == "perl-prefork":
            argv = [*perl, "/usr/bin/qpsmtpd-prefork", *listen,
                    "--children", str(pool), "--idle-children", str(pool)]
            servers.append(Server(name, argv, port, perl_env, base, pool))
        elif name == "perl-forkserver":
            argv = [*perl, "/usr/bin/qpsmtpd-forkserver", *listen, "--limit-connections", str(pool)]
            servers.append(Server(name, argv, port, perl_env, base, None))
        elif name == "floor":
            argv = [sys.executable, os.path.join(HERE, "floor_server.py"), str(port), str(pool)]
            servers.append(Server(name, argv, port, env, base, pool))
        else:
            raise SystemExit(f"unknown server {name}")
    return servers


# -- load -----------------------------------------------------------------------------------------
def smtp_source(port, sessions, total, per_session, size):
    """Send `total` messages over `sessions` parallel sessions; per_session > 1 uses
    smtp-source -d (one connection carries several messages) and repeats the run."""
    args = [*SOURCE, "-s", str(sessions)]
    if size:
        args += ["-l", str(size)]
    if per_session == 1:
        runs = [[*args, "-m", str(total)]]
    else:
        batch = sessions * per_session
        runs = [[*args, "-d", "-m", str(batch)]] * max(1, round(total / batch))
    sent = 0
    for argv in runs:
        out = subprocess.run([*argv, f"127.0.0.1:{port}"], capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"smtp-source failed (port {port}): {' '.join(argv)}: {out.stderr.strip()[:300]}")
        sent += int(argv[argv.index("-m") + 1])
    return sent


FAILURES = []


def measure(server, sessions, total, per_session, size, tries=3):
    """(messages/second, CPU ms/message); a run that smtp-source aborts (a lost
    connection) is reported and repeated."""
    for attempt in range(tries):
        server.settle()
        root = server.proc.pid
        cpu0, t0 = cpu_ms(root), time.perf_counter()
        try:
            sent = smtp_source(server.port, sessions, total, per_session, size)
        except RuntimeError as exc:
            FAILURES.append(f"{server.name}: {exc}")
            print(f"# {server.name}: run failed, repeating: {exc}", flush=True)
            continue
        wall = time.perf_counter() - t0
        time.sleep(0.2)            # let retiring children be reaped into cutime
        cpu = cpu_ms(root) - cpu0
        return sent / wall, cpu / sent
    raise RuntimeError(f"{server.name}: {tries} runs failed")


# -- memory ------------------------------------------------------------------------------------------
def talk(sock, line, expect):
    sock.sendall(line)
    data = b""
    while not data.endswith(b"\r\n") or data.split(b"\r\n")[-2][3:4] == b"-":
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError(f"connection closed after {line!r}")
        data += chunk
    if not data.startswith(expect):
        raise RuntimeError(f"{line!r} -> {data!r}")
    return data


def open_session(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    talk(s, b"", b"220")
    talk(s, b"HELO client.example.test\r\n", b"250")
    return s


def send_small(s):
    talk(s, b"MAIL FROM:<src@example.test>\r\n", b"250")
    talk(s, b"RCPT TO:<rcpt@example.test>\r\n", b"250")
    talk(s, b"DATA\r\n", b"354")
    talk(s, b"Subject: hi\r\n\r\n" + b"line of text\r\n" * 50 + b".\r\n", b"250")


def busy_pss(server, n):
    """Total PSS of the tree and per child while n sessions are busy (each sent one
    message and is in the middle of the next transaction)."""
    socks = []
    try:
        for _ in range(n):
            s = open_session(server.port)
            send_small(s)
            talk(s, b"MAIL FROM:<src@example.test>\r\n", b"250")
            socks.append(s)
        time.sleep(1.0)
        pids = process_tree(server.proc.pid)
        pss = {pid: rollup(pid) for pid in pids}
        children = [pss[p] for p in pids if p != server.proc.pid] or [pss[server.proc.pid]]
        return sum(pss.values()) / 1024, statistics.mean(children) / 1024, len(children)
    finally:
        for s in socks:
            s.close()


def big_message(server, megabytes=50):
    """RSS of the tree's largest process before and while a child receives one
    50 MB message; flat means the body never sits in memory."""
    s = open_session(server.port)
    try:
        send_small(s)
        talk(s, b"MAIL FROM:<src@example.test>\r\n", b"250")
        talk(s, b"RCPT TO:<rcpt@example.test>\r\n", b"250")
        talk(s, b"DATA\r\n", b"354")
        pids = [p for p in process_tree(server.proc.pid) if p != server.proc.pid] or [server.proc.pid]
        before = max(rss_kb(p) for p in pids)
        line = b"X" * 78 + b"\r\n"
        chunk = b"Subject: big\r\n\r\n" + line * (65536 // len(line))
        peak, sent, t0 = before, 0, time.perf_counter()
        s.settimeout(120)
        while sent < megabytes << 20:
            s.sendall(chunk)
            sent += len(chunk)
            chunk = line * (65536 // len(line))
            if (sent >> 16) % 16 == 0:
                peak = max(peak, max(rss_kb(p) for p in pids))
        talk(s, b".\r\n", b"250")
        wall = time.perf_counter() - t0
        peak = max(peak, max(rss_kb(p) for p in pids))
        return before / 1024, peak / 1024, wall
    finally:
        s.close()


# -- main ---------------------------------------------------------------------------------------------
SCENARIOS = [  # (label, sessions, per_session, size, total messages)
    ("small  s=1  1/sess", 1, 1, 0, 600),
    ("small  s=1 10/sess", 1, 10, 0, 1000),
    ("small  s=10  1/sess", 10, 1, 0, 2000),
    ("small  s=10 10/sess", 10, 10, 0, 3000),
    ("small  s=50  1/sess", 50, 1, 0, 3000),
    ("small  s=50 10/sess", 50, 10, 0, 5000),
    ("100KB  s=1  1/sess", 1, 1, 102400, 400),
    ("100KB  s=1 10/sess", 1, 10, 102400, 500),
    ("100KB  s=10  1/sess", 10, 1, 102400, 1000),
    ("100KB  s=10 10/sess", 10, 10, 102400, 1000),
    ("100KB  s=50  1/sess", 50, 1, 102400, 1500),
    ("100KB  s=50 10/sess", 50, 10, 102400, 2000),
]


def in_private_netns():
    return os.environ.get("QPB_NETNS") == "1"


def reexec_in_netns():
    """Run this script again in a network namespace with only loopback up."""
    env = dict(os.environ, QPB_NETNS="1")
    cmd = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
           sys.executable, os.path.abspath(__file__), *sys.argv[1:]]
    os.execvpe(cmd[0], cmd, env)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages (0.2x instead of 0.5x)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat each measurement, alternating servers; the median counts")
    parser.add_argument("--best", action="store_true", help="report the best round, not the median")
    parser.add_argument("--servers", default="py-prefork,py-forkserver,perl-prefork,perl-forkserver")
    parser.add_argument("--only", help="run only scenarios whose label contains this text")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--port", type=int, default=3525)
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    args = parser.parse_args()
    if not in_private_netns():
        reexec_in_netns()
    if os.geteuid() != 0:
        raise SystemExit("run as root (servers switch to user nobody)")
    scale = 0.2 if args.quick else 0.5
    rounds = args.rounds
    base = tempfile.mkdtemp(prefix="qpsmtpd-bench-")
    os.chmod(base, 0o755)
    names = args.servers.split(",")
    servers = make_servers(base, names, 60, args.port)
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}  {os.cpu_count()} cores  "
          f"{cpu_model()}  {interpreter()}  load {loadavg()}  work dir {base}",
          flush=True)
    helpers = []
    if any("rdns" in n.split("-") for n in names):
        helpers.append(subprocess.Popen([sys.executable, os.path.join(HERE, "tiny_dns.py"),
                                         str(TINY_DNS_PORT)]))
    try:
        for server in servers:
            server.start()
        results = {}
        for label, sessions, per, size, total in SCENARIOS:
            if args.only and args.only not in label:
                continue
            total = max(sessions * per, int(total * scale))
            runs = {}
            for _ in range(rounds):
                for server in servers:
                    runs.setdefault(server.name, []).append(measure(server, sessions, total, per, size))
            for name, got in runs.items():          # the median of the rounds (or the best)
                rates, cpus = [r for r, _ in got], [c for _, c in got]
                results[(label, name)] = ((max(rates), min(cpus)) if args.best else
                                          (statistics.median(rates), statistics.median(cpus)))
            print_row(label, names, results)
        memory = {}
        if not args.no_memory:
            for server in servers:
                server.stop()
            servers = memory_servers(base, names, args.port + 50)
            for server in servers:
                server.start()
                server.settle()
                memory[server.name] = busy_pss(server, 50) + big_message(server)
                server.stop()
        print_tables(names, results, memory)
        print(f"\nload average at the end: {loadavg()} (other work on the machine skews the numbers)")
        if FAILURES:
            print(f"\n{len(FAILURES)} run(s) failed and were repeated:")
            for line in FAILURES:
                print(f"  {line}")
    finally:
        stop_all(servers, helpers)
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


def stop_all(servers, helpers):
    """Stop the servers, then the helper processes we started (DNS, spamd)."""
    for server in servers:
        server.stop()
    for proc in helpers:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def memory_servers(base, names, port0):
    """Fresh servers with a pool of exactly 50 children."""
    mem_base = os.path.join(base, "mem")
    os.makedirs(mem_base)
    os.chmod(mem_base, 0o755)
    return make_servers(mem_base, names, 50, port0)


def loadavg():
    with open("/proc/loadavg") as fh:
        return " ".join(fh.read().split()[:3])


def interpreter():
    """The Python the servers run (BIN is this interpreter's venv): its real path,
    version and whether it runs on a shared libpython (slower: PIC calls between
    the interpreter's own functions; Debian's /usr/bin/python3.11 is one static,
    PGO/LTO-built binary)."""
    try:
        with open("/proc/self/maps") as fh:
            shared = "libpython" in fh.read()
    except OSError:
        shared = False
    return (f"Python {sys.version.split()[0]} {os.path.realpath(sys.executable)} "
            f"({'shared libpython' if shared else 'static'})")


def cpu_model():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def print_row(label, names, results):
    cells = []
    for name in names:
        rate, cpu = results[(label, name)]
        cells.append(f"{name} {rate:7.0f}/s {cpu:6.2f}ms")
    print(f"{label:22s} " + " | ".join(cells), flush=True)


def ratio(a, b):
    return f"{a / b:.1f}x" if b else "-"


def print_tables(names, results, memory):
    labels = [label for label, *_ in SCENARIOS if (label, names[0]) in results]
    pairs = [(py, perl) for py in names if py.startswith("py-")
             for perl in names if perl.startswith("perl-") and perl.split("-", 1)[1] == py.split("-", 1)[1]]
    print("\n## Throughput (messages/second) and server CPU per message (ms)\n")
    head = "| scenario | " + " | ".join(f"{n} msg/s | {n} CPU ms" for n in names)
    head += "".join(f" | {py}/{perl} msg/s | {perl}/{py} CPU" for py, perl in pairs) + " |"
    print(head)
    print("|" + "---|" * (1 + 2 * len(names) + 2 * len(pairs)))
    for label in labels:
        row = [label.strip()]
        for name in names:
            rate, cpu = results[(label, name)]
            row += [f"{rate:.0f}", f"{cpu:.2f}"]
        for py, perl in pairs:
            row += [ratio(results[(label, py)][0], results[(label, perl)][0]),
                    ratio(results[(label, perl)][1], results[(label, py)][1])]
        print("| " + " | ".join(row) + " |")
    ours = [n for n in names if n.startswith("py-")]
    others = [n for n in names if not n.startswith("py-")]
    if ours and others:
        print("\n## Ratios: ours / peer msg/s (peer ÷ ours CPU ms/message)\n")
        print("| scenario | ours | " + " | ".join(others) + " |")
        print("|" + "---|" * (2 + len(others)))
        for label in labels:
            for o in ours:
                cells = [f"{ratio(results[(label, o)][0], results[(label, p)][0])} "
                         f"({ratio(results[(label, p)][1], results[(label, o)][1])})" for p in others]
                print(f"| {label.strip()} | {o} | " + " | ".join(cells) + " |")
    if memory:
        print("\n## Memory\n")
        print("| server | total PSS, 50 busy children (MB) | PSS per child (MB) | children "
              "| 50 MB message: child RSS before (MB) | peak while receiving (MB) | seconds |")
        print("|---|---|---|---|---|---|---|")
        for name in names:
            total, per_child, count, before, peak, wall = memory[name]
            print(f"| {name} | {total:.1f} | {per_child:.2f} | {count} | {before:.1f} | {peak:.1f} | {wall:.2f} |")


if __name__ == "__main__":
    main()
