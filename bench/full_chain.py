#!/usr/bin/env python3
"""Full-chain benchmark (issue 15 item 5): our qpsmtpd-prefork and Perl qpsmtpd 0.94's
with the same plugin chain, alternating, in one run. Run by hand as root:

    flock /tmp/qpt-bench.lock .venv/bin/python bench/full_chain.py --rounds 3

The chain is Debian's /etc/qpsmtpd (copied; plugins check_earlytalker action log,
check_relay, rhsbl, dnsbl, check_spamhelo, check_badmailfrom, check_badrcptto,
check_loop, rcpt_ok; check_loop as `loop`: Debian's wrapper loses its max_hops and
refuses every message with 552 Too many hops, plugins/check_loop.py) plus fcrdns, sender_permitted_from (SPF), greylisting (triplets
whitelisted before the measurement), dkim (verifying), spamassassin on a sample of the
messages (bench_sample: every --sample'th message carries X-Bench-Scan) and
queue/discard; dnsbl_zones dnsbl.test, rhsbl_zones rhsbl.test. Changed in the copy:
relayclients is empty (Debian's lists 127.0.0.1, the benchmark client, and a relay
client skips every check), rcpthosts example.test, earlytalker `wait 0` (Debian's
1 s greeting delay caps both servers at 50 sessions/s), and the log file's path.

Everything runs in a mount + network namespace of its own (unshare -nm, only
loopback): an nsd on 127.0.0.1:53 serving t/services' test zones (copied from
$QPT_STATE_DIR/dns), /etc/resolv.conf bind-mounted to `nameserver 127.0.0.1` (Perl
resolves through it; ours is told dns_servers 127.0.0.1), and a spamd of its own on
a unix socket. The client is an asyncio SMTP client here (smtp-source cannot send a
DKIM-signed message): --sessions parallel sessions, one message per session.
Reported: messages/second, server CPU ms per message (the prefork tree, as run.py
measures it) and with spamd's and nsd's CPU added.
"""

import argparse
import asyncio
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import run  # bench/run.py: process tree CPU, Server, machine facts

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
STATE = os.environ.get("QPT_STATE_DIR", "/tmp/qpt-state")
ZONES = ["example.test", "127.in-addr.arpa", "dnsbl.test", "rhsbl.test"]
RCPTS = 10               # greylisting triplets: 127.0.0.1, src@example.test, rcptN@example.test
SENDER = "src@example.test"


def chain(greylist_dir, spamd_socket, drop=()):
    """The plugins file, the same for both servers; `drop`: plugins left out (to see
    what one costs)."""
    return "\n".join(line for line in [
        "check_earlytalker action log wait 0",
        "fcrdns",
        "check_relay",
        "rhsbl",
        "dnsbl",
        "check_spamhelo",
        "check_badmailfrom",
        "check_badrcptto",
        "loop",              # Debian's check_loop wrapper loses max_hops: 552 for every message
        "sender_permitted_from",
        f"greylisting black_timeout 0 sender 1 recipient 1 db_dir {greylist_dir}",
        "rcpt_ok",
        "dkim",
        "bench_sample",
        f"spamassassin spamd_socket {spamd_socket}",
        "queue/discard",
    ] if line.split()[0] not in drop)


# -- the namespace: nsd on 127.0.0.1:53, a private resolv.conf, spamd -----------------------
def reexec_in_namespace():
    env = dict(os.environ, QPB_NETNS="1")
    cmd = ["unshare", "-nm", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
           sys.executable, os.path.abspath(__file__), *sys.argv[1:]]
    os.execvpe(cmd[0], cmd, env)


def start_nsd(base, helpers):
    d = os.path.join(base, "dns")
    os.makedirs(d)
    for zone in ZONES:
        src = os.path.join(STATE, "dns", f"{zone}.zone")
        if not os.path.exists(src):
            raise SystemExit(f"no {src}: the test services' zones (t/services/start-services.sh dns)")
        shutil.copy(src, d)
    conf = os.path.join(d, "nsd.conf")
    with open(conf, "w") as fh:
        fh.write(f"""server:
    ip-address: 127.0.0.1@53
    do-ip6: no
    username: ""
    chroot: ""
    zonesdir: "{d}"
    database: ""
    zonelistfile: "{d}/zone.list"
    xfrdfile: "{d}/xfrd.state"
    xfrdir: "{d}"
    pidfile: "{d}/nsd.pid"
    logfile: "{d}/nsd.log"
    server-count: 1
    verbosity: 1
remote-control:
    control-enable: no
""" + "".join(f'zone:\n    name: "{z}"\n    zonefile: "{z}.zone"\n' for z in ZONES))
    proc = subprocess.Popen(["nsd", "-d", "-c", conf], stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(d, "nsd.out"), "wb"))
    helpers.append(proc)
    resolv = os.path.join(base, "resolv.conf")
    with open(resolv, "w") as fh:
        fh.write("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    subprocess.run(["mount", "--bind", resolv, "/etc/resolv.conf"], check=True)
    deadline = time.time() + 20
    while time.time() < deadline:
        out = subprocess.run(["dig", "+short", "+time=1", "+tries=1", "-x", "127.0.0.1"],
                             capture_output=True, text=True).stdout.strip()
        if out == "mx.example.test.":
            return proc
        time.sleep(0.2)
    raise SystemExit(f"nsd does not answer; see {d}/nsd.out")


def start_spamd(base, helpers, children):
    d = os.path.join(base, "spamd")
    os.makedirs(d)
    shutil.chown(d, "debian-spamd", "debian-spamd")
    sock = os.path.join(d, "spamd.sock")
    # --local: no network tests (RBL/URIBL/razor); as t/services runs it
    proc = subprocess.Popen(["spamd", "--listen", sock, "--socketmode=0666", "--local",
                             f"--min-children={children}", f"--max-children={children}",
                             "--username=debian-spamd", "--groupname=debian-spamd",
                             f"--helper-home-dir={d}", f"--syslog={d}/spamd.log"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    helpers.append(proc)
    deadline = time.time() + 120
    while time.time() < deadline:
        out = subprocess.run(["spamc", "-U", sock, "-K"], capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.startswith("SPAMD/"):      # "SPAMD/1.5 0"
            return proc, sock
        time.sleep(0.5)
    raise SystemExit(f"spamd does not answer; see {d}/spamd.log")


def perl_resolves():
    """Perl's Net::DNS reads the bind-mounted resolv.conf: PTR of 127.0.0.1."""
    code = ('use Net::DNS; my $r = Net::DNS::Resolver->new; my $q = $r->query("1.0.0.127.in-addr.arpa", "PTR");'
            ' print $q ? ($q->answer)[0]->ptrdname : "FAIL ".$r->errorstring')
    return subprocess.run(["perl", "-e", code], capture_output=True, text=True).stdout


# -- configs and servers --------------------------------------------------------------------
def config_dir(base, kind, spamd_socket, plugin_dirs, drop=(), log=True):
    """A copy of Debian's /etc/qpsmtpd with the chain and this run's paths."""
    nobody = pwd.getpwnam(run.USER)
    d = os.path.join(base, f"{kind}-config")
    shutil.copytree("/etc/qpsmtpd", d)
    dirs = {}
    for name in ("spool", "greylist", "store"):
        dirs[name] = os.path.join(base, f"{kind}-{name}")
        os.makedirs(dirs[name], mode=0o700)
        os.chown(dirs[name], nobody.pw_uid, nobody.pw_gid)
    files = {
        "plugins": chain(dirs["greylist"], spamd_socket, drop),
        "plugin_dirs": "\n".join(plugin_dirs),
        "spool_dir": dirs["spool"],
        "store_dir": dirs["store"],
        "relayclients": "# empty: the benchmark client is 127.0.0.1",
        "rcpthosts": "example.test",
        "dnsbl_zones": "dnsbl.test",
        "rhsbl_zones": "rhsbl.test",
        "dns_servers": "127.0.0.1",
        "me": "bench.example.test",
        "logging": f"logging/file loglevel LOGINFO {base}/{kind}-qpsmtpd.log" if log else "",
    }
    if not log:                   # --no-log: no logging plugin, warnings to stderr
        files["loglevel"] = "4"
    for name, text in files.items():
        with open(os.path.join(d, name), "w") as fh:
            fh.write(text + "\n")
    open(os.path.join(base, f"{kind}-qpsmtpd.log"), "w").close()
    shutil.chown(os.path.join(base, f"{kind}-qpsmtpd.log"), run.USER)
    return d


def make_servers(base, names, spamd_socket, port0, pool=60, profile=False, drop=(), log=True):
    perl_plugins = os.path.join(base, "perl-plugins")
    os.makedirs(os.path.join(perl_plugins, "queue"))
    with open(os.path.join(perl_plugins, "queue", "discard"), "w") as fh:
        fh.write(run.PERL_DISCARD)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TCP", "QPSMTPD", "RELAY"))}
    servers = []
    for i, name in enumerate(names):
        port = port0 + i
        listen = ["--listen-address", "127.0.0.1", "--port", str(port), "--user", run.USER]
        if name.startswith("py-prefork"):
            # variants for an A/B in one run: py-prefork-nolog (no logging plugin),
            # py-prefork-no-PLUGIN[+PLUGIN] (the chain without those plugins)
            variant = name[len("py-prefork"):]
            if variant not in ("", "-nolog") and not variant.startswith("-no-"):
                raise SystemExit(f"unknown server {name}")
            sys.path.insert(0, ROOT)
            from qpsmtpd_py.plugin import default_plugin_dirs
            conf = config_dir(base, "py" + variant, spamd_socket,
                              [os.path.join(HERE, "full_chain", "plugins"), *default_plugin_dirs()],
                              [*drop, *variant[4:].split("+")] if variant.startswith("-no-") else drop,
                              log and variant != "-nolog")
            prog = ([sys.executable, os.path.join(HERE, "profile_prefork.py")] if profile
                    else [os.path.join(run.BIN, "qpsmtpd-prefork")])
            argv = [*prog, *listen, "--config", conf,
                    "--children", str(pool), "--idle-children", str(pool), "--max-requests", "100"]
            servers.append(run.Server(name, argv, port, dict(env, QPB_PROFILE_DIR=profile or ""),
                                      base, pool))
        elif name == "perl-prefork":
            conf = config_dir(base, "perl", spamd_socket,
                              ["/usr/share/qpsmtpd/plugins", perl_plugins, os.path.join(HERE, "perl")],
                              drop, log)
            # GreylistP0f.pm: 0.94's greylisting dies on a missing method without it
            argv = ["perl", "-T", "-w", "-I" + os.path.join(HERE, "perl"), "-MGreylistP0f",
                    "/usr/bin/qpsmtpd-prefork", *listen,
                    "--children", str(pool), "--idle-children", str(pool)]
            servers.append(run.Server(name, argv, port, dict(env, QPSMTPD_CONFIG=conf), base, pool))
        else:
            raise SystemExit(f"unknown server {name} (py-prefork, perl-prefork)")
    return servers


# -- the client -------------------------------------------------------------------------------
def messages():
    """(plain, sampled): one DKIM-signed message (example.test, selector sel, the test
    key), CRLF, dot-terminated; the sampled one has X-Bench-Scan prepended (unsigned)."""
    import dkim
    key = os.path.join(STATE, "dns", "dkim-sel.private")
    with open(key, "rb") as fh:
        private = fh.read()
    body = ("Hello,\n\nthe quarterly figures are attached as promised. Let me know\n"
            "whether the meeting on Thursday still works for you; otherwise we can\n"
            "move it to next week. The venue is the same as last time.\n\n") * 8
    msg = (f"From: Sender <{SENDER}>\nTo: <rcpt@example.test>\nSubject: quarterly figures\n"
           "Date: Fri, 04 Dec 2026 09:00:00 +0000\nMessage-ID: <bench.1@example.test>\n"
           "MIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n\n" + body)
    msg = msg.replace("\n", "\r\n").encode()
    sig = dkim.sign(msg, b"sel", b"example.test", private,
                    include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
    plain = sig + msg + b".\r\n"
    return plain, b"X-Bench-Scan: 1\r\n" + plain


async def reply(reader):
    lines = []
    while True:
        line = await reader.readline()
        if not line:
            return 0, b"<closed>"
        lines.append(line)
        if line[3:4] != b"-":
            return int(line[:3]), b"".join(lines)


async def session(port, i, plain, sampled, sample, outcome):
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as exc:
        outcome.setdefault(f"connect {exc}", 0)
        outcome[f"connect {exc}"] += 1
        return
    steps = [(None, 220), (b"EHLO client.example.test\r\n", 250), (f"MAIL FROM:<{SENDER}>\r\n".encode(), 250),
             (f"RCPT TO:<rcpt{i % RCPTS}@example.test>\r\n".encode(), 250), (b"DATA\r\n", 354),
             (sampled if i % sample == 0 else plain, 250)]
    try:
        for line, want in steps:
            if line:
                writer.write(line)
            code, text = await reply(reader)
            if code != want:
                key = f"{code} {text.decode('ascii', 'replace').strip()[:80]}"
                outcome[key] = outcome.get(key, 0) + 1
                break
        else:
            outcome["ok"] = outcome.get("ok", 0) + 1
        writer.write(b"QUIT\r\n")
        await reply(reader)
    except OSError as exc:
        outcome[f"error {exc}"] = outcome.get(f"error {exc}", 0) + 1
    finally:
        writer.close()


async def load(port, sessions, total, sample, first=0):
    plain, sampled = messages()
    outcome, todo = {}, iter(range(first, first + total))

    async def worker():
        for i in todo:
            await session(port, i, plain, sampled, sample, outcome)
    await asyncio.gather(*(worker() for _ in range(sessions)))
    return outcome


def warm_greylisting(server):
    """Each triplet deferred once, then let through (black_timeout 0): white."""
    for _ in range(3):
        outcome = asyncio.run(load(server.port, 1, RCPTS, 10 ** 9))
        if outcome.get("ok") == RCPTS:
            return
    raise SystemExit(f"{server.name}: greylisting did not let the triplets through: {outcome}")


# -- main ----------------------------------------------------------------------------------------
def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default="py-prefork,perl-prefork")
    parser.add_argument("--messages", type=int, default=1500, help="messages per round and server")
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--sample", type=int, default=10, help="every Nth message goes to spamd")
    parser.add_argument("--spamd-children", type=int, default=4,
                        help="spamd's pool (2 caps the scans at ~8/s on this machine)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--drop", default="", help="plugins to leave out of the chain, comma-separated")
    parser.add_argument("--no-log", action="store_true",
                        help="no logging/file plugin, loglevel 4 (Debian's: logging/file at LOGINFO)")
    parser.add_argument("--port", type=int, default=22300)
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    parser.add_argument("--profile", metavar="DIR", help="our children under cProfile (bench/"
                        "profile_prefork.py), stats into DIR; then profile_prefork.py --report DIR")
    args = parser.parse_args()
    if os.environ.get("QPB_NETNS") != "1":
        reexec_in_namespace()
    if os.geteuid() != 0:
        raise SystemExit("run as root (unshare, nsd on port 53, servers switch to nobody)")
    base = tempfile.mkdtemp(prefix="qpsmtpd-fullchain-")
    os.chmod(base, 0o755)
    names = args.servers.split(",")
    helpers, servers = [], []
    try:
        nsd = start_nsd(base, helpers)
        print(f"# Perl resolves through the private resolv.conf: PTR 127.0.0.1 -> {perl_resolves()}")
        spamd, sock = start_spamd(base, helpers, args.spamd_children)
        servers = make_servers(base, names, sock, args.port, profile=args.profile,
                               drop=[d for d in args.drop.split(",") if d], log=not args.no_log)
        print(f"# {time.strftime('%Y-%m-%d %H:%M')}  {os.cpu_count()} cores  {run.cpu_model()}  "
              f"load {run.loadavg()}  work dir {base}", flush=True)
        for server in servers:
            server.start()
            warm_greylisting(server)
        runs, first = {}, 0
        for rnd in range(args.rounds):
            for server in servers:
                server.settle()
                trees = [server.proc.pid, spamd.pid, nsd.pid]
                cpu0 = [run.cpu_ms(p) for p in trees]
                t0 = time.perf_counter()
                outcome = asyncio.run(load(server.port, args.sessions, args.messages, args.sample, first))
                wall = time.perf_counter() - t0
                time.sleep(0.3)
                cpu = [run.cpu_ms(p) - c for p, c in zip(trees, cpu0)]
                first += args.messages
                ok = outcome.get("ok", 0)
                runs.setdefault(server.name, []).append(
                    (ok / wall, cpu[0] / args.messages, sum(cpu) / args.messages, cpu[1] / args.messages))
                bad = {k: v for k, v in outcome.items() if k != "ok"}
                print(f"round {rnd + 1} {server.name:13s} {ok / wall:7.1f} msg/s  server {cpu[0] / args.messages:6.2f} ms"
                      f"  +spamd +nsd {sum(cpu) / args.messages:6.2f} ms  accepted {ok}/{args.messages}"
                      + (f"  not accepted: {bad}" if bad else ""), flush=True)
        print(f"\n| server | msg/s | server CPU ms/msg | + spamd + nsd CPU ms/msg | spamd CPU ms/msg |")
        print("|---|---|---|---|---|")
        med = {}
        for name, got in runs.items():
            med[name] = [statistics.median(col) for col in zip(*got)]
            rate, cpu, total, spamd_cpu = med[name]
            print(f"| {name} | {rate:.1f} | {cpu:.2f} | {total:.2f} | {spamd_cpu:.2f} |")
        if "py-prefork" in med and "perl-prefork" in med:
            py, perl = med["py-prefork"], med["perl-prefork"]
            print(f"\nours / Perl: msg/s {py[0] / perl[0]:.2f}x, server CPU per message "
                  f"{perl[1] / py[1]:.2f}x less, with spamd and nsd {perl[2] / py[2]:.2f}x less")
        print(f"load average at the end: {run.loadavg()}")
    finally:
        run.stop_all(servers, helpers)
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
