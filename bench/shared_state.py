#!/usr/bin/env python3
"""Benchmark: the cost of the stateful plugins (issue 11 item 7). qpsmtpd-prefork with
greylisting + a token bucket (berkeley_ipblacklist tokenbucket, berkeley_tokenbucketadd)
+ karma, against the same server without them, on LMDB (store_sync 1s, the default, 1
and 0) and on Redis; Postfix's smtp-source drives 50 concurrent sessions. Run by hand (not a test):

    .venv/bin/python bench/shared_state.py                  # about 4 minutes
    .venv/bin/python bench/shared_state.py --rounds 3 --only "1/sess"

Every server gets bench/run.py's base plugins (relay, count_unrecognized_commands,
dont_require_anglebrackets, rcpt_ok, queue/discard), runs as nobody with -H, 60
children, in a network namespace with only loopback (unshare -n) and its own
redis-server there. smtp-source's triplet (127.0.0.1) is made white before the run,
so every message passes greylisting and costs what a known sender costs in real
life: karma's read at pre-connection, the bucket's read at connect, and for
greylisting a rewrite of the triplet at most once a minute per worker (the default
white_refresh 60; the -rewrite variants rewrite it on every delivery, as qpsmtpd).
Reports messages/second and server CPU ms per message (bench/run.py's measurement),
best of the rounds; NAME#2 in --variants runs a second server of a variant, to see
the machine's noise between two identical servers.
"""

import argparse
import os
import pwd
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
import run as R  # noqa: E402  bench/run.py: Server, measure, cpu_ms, loadavg

STATE_PLUGINS = ["karma", "berkeley_ipblacklist method tokenbucket",
                 "berkeley_tokenbucketadd method tokenbucket", "greylisting"]
# greylisting white_refresh 0: qpsmtpd's rewrite of a white triplet on every delivery
# (the default since 2026-12-05 is white_refresh 60: at most once a minute)
REWRITE = STATE_PLUGINS[:3] + ["greylisting white_refresh 0"]
VARIANTS = {           # name -> (stateful plugins, store files)
    "off": ((), {}),
    "lmdb": (STATE_PLUGINS, {}),                            # the defaults: store_sync 1s
    "lmdb-sync1": (STATE_PLUGINS, {"store_sync": "1"}),     # fsync every commit (the old default)
    "lmdb-nosync": (STATE_PLUGINS, {"store_sync": "0"}),
    "redis": (STATE_PLUGINS, {"store_backend": "redis"}),
    "lmdb-rewrite": (REWRITE, {}),
    "redis-rewrite": (REWRITE, {"store_backend": "redis"}),
    "lmdb-rewrite-sync1": (REWRITE, {"store_sync": "1"}),
    # diagnostics: only the per-connection reads (karma, bucket), or only greylisting
    "reads-only": (STATE_PLUGINS[:3], {}),
    "greylisting-only": (STATE_PLUGINS[3:], {}),
    "greylisting-rewrite": (REWRITE[3:], {}),
    "karma-only": (STATE_PLUGINS[:1], {}),
    "buckets-only": (STATE_PLUGINS[1:3], {}),
    # karma's seven hooks, greylisting's and berkeley_ipblacklist's, each declining at
    # once (bench/noop_plugins): the engine's dispatch alone
    "dispatch-only": (["bench_noop", "bench_noop2"],
                      {"plugin_dirs": os.path.join(HERE, "noop_plugins") + "\n"
                       + os.path.join(os.path.dirname(HERE), "plugins")}),
}
SCENARIOS = [("small s=50  1/sess", 50, 1, 0, 3000), ("small s=50 10/sess", 50, 10, 0, 5000)]
REDIS_PORT = 6391


def write_config(directory, spool, store_dir, stateful, files):
    os.makedirs(directory, exist_ok=True)
    plugins = list(R.PLUGINS)
    plugins[3:3] = stateful           # before rcpt_ok, as a real config lists them
    content = {"me": "bench.example.test", "rcpthosts": "example.test", "loglevel": "4",
               "spool_dir": spool, "plugins": "\n".join(plugins), "store_dir": store_dir,
               "store_redis": f"127.0.0.1:{REDIS_PORT}", **files}
    for name, text in content.items():
        with open(os.path.join(directory, name), "w") as fh:
            fh.write(text + "\n")


def whiten(config_dir):
    """smtp-source's client (127.0.0.1) is a known, white greylisting client."""
    from qpsmtpd_py.config import Config
    from qpsmtpd_py.helpers.greylist import TABLE, client_key, format_record
    from qpsmtpd_py.helpers.store import make_store
    store = make_store(Config([config_dir]))
    store.table(TABLE).set(client_key("127.0.0.1"), format_record(time.time(), 1, 1, 1),
                           ttl=86400)
    if hasattr(store, "close"):
        store.close()


def start_redis(workdir):
    proc = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(REDIS_PORT),
                             "--save", "", "--appendonly", "no", "--dir", workdir],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", REDIS_PORT), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def load_variant(work, name, files=None):
    """The loaded app of variant `name` (NAME#2: a twin) for in-process runs: its
    config, spool and store under `work`, smtp-source's triplet white."""
    from qpsmtpd_py.app import Qpsmtpd
    from qpsmtpd_py.config import Config
    stateful, variant_files = VARIANTS[name.split("#")[0]]
    config = os.path.join(work, "config-" + name)
    write_config(config, os.path.join(work, "spool-" + name), os.path.join(work, "store-" + name),
                 stateful, {**(files or {}), **variant_files})
    if stateful:
        whiten(config)
    return Qpsmtpd(Config([config])).load()


def run_sessions(app, path, count, before=None):
    """`count` sessions through `app`, pre-connection included, the client's side read
    from `path`, the replies into /dev/null; before() runs before each connection."""
    from qpsmtpd_py.channel import PipeChannel
    from qpsmtpd_py.server.common import new_connection, run_session
    from qpsmtpd_py.server.connect import run_pre_connection
    for _ in range(count):
        rfd, wfd = os.open(path, os.O_RDONLY), os.open(os.devnull, os.O_WRONLY)
        connection = new_connection(("127.0.0.1", 40000), ("127.0.0.1", 25))
        if before is not None:
            before()
        run_pre_connection(app, connection, 0, [])
        run_session(app, PipeChannel(rfd, wfd, timeout=10), connection)
        os.close(rfd)
        os.close(wfd)


def profile(args):
    """In-process: the variant's plugins in one process, sessions read from a file
    (bench/profile_session.py's), pre-connection included; no sockets, no forks.
    Reports CPU ms per message and, unless --no-profile, cProfile's top functions."""
    from profile_session import session_bytes, timed
    work = tempfile.mkdtemp(prefix="qpsmtpd-prof-state-")
    app = load_variant(work, args.profile, {"store_redis": f"127.0.0.1:{args.redis_port}",
                                            "store_redis_prefix": f"prof-{os.getpid()}:"})
    per = args.per_session
    path = os.path.join(work, "session")
    with open(path, "wb") as fh:
        fh.write(session_bytes(per, 0))

    def run():
        run_sessions(app, path, args.n // per)

    try:
        run()                                    # warm: imports, config, store handles
        if args.procs > 1:
            return forked(args, run, per)
        timed(run, args, f"{args.profile}: {args.n} messages, {per} per session")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def forked(args, run, per):
    """--procs N: N forked processes (as prefork's children: the app loaded before the
    fork, the store opened after it) run the sessions at once on one store; the CPU of
    all of them (rusage), so LMDB's writer lock and the cross-process costs count."""
    args.n //= args.procs
    t0 = time.perf_counter()
    pids = []
    for _ in range(args.procs):
        pid = os.fork()
        if pid == 0:
            try:
                run()
            finally:
                os._exit(0)
        pids.append(pid)
    user = system = faults = switches = preempted = 0.0
    for pid in pids:
        _, status, usage = os.wait4(pid, 0)
        user += usage.ru_utime
        system += usage.ru_stime
        faults += usage.ru_minflt
        switches += usage.ru_nvcsw
        preempted += usage.ru_nivcsw
    cpu = user + system
    wall = time.perf_counter() - t0
    total = args.n * args.procs
    print(f"{args.profile}: {args.procs} processes, {total} messages, {per} per session: "
          f"{cpu * 1000 / total:.3f} ms CPU per message (user {user * 1000 / total:.3f}, "
          f"system {system * 1000 / total:.3f}), {total / wall:.0f} msg/s; per message "
          f"{faults / total:.1f} minor faults, {switches / total:.2f} waits, "
          f"{preempted / total:.2f} preemptions")
    return cpu * 1000 / total


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="fewer messages")
    parser.add_argument("--scale", type=float, default=0.5,
                        help="messages per run: this share of 3000 (1/sess) and 5000 (10/sess)")
    parser.add_argument("--only", help="only scenarios whose label contains this text")
    parser.add_argument("--variants", default="off,lmdb,lmdb-sync1,redis",
                        help="comma-separated; NAME#2 runs a second server of NAME (noise)")
    parser.add_argument("--port", type=int, default=3625)
    parser.add_argument("--idle-children", type=int, default=60,
                        help="the servers' --idle-children (60: the pool pre-forked, the "
                             "figures quoted for issue 11; 5: a growing pool)")
    parser.add_argument("--max-requests", type=int, default=100,
                        help="the servers' --max-requests (a child's sessions before it is "
                             "replaced; 100, the bench's default, as in production)")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    parser.add_argument("--hook-costs", action="store_true",
                        help="time every hook call in the servers (bench/hook_costs) and "
                             "print each plugin's CPU per message; slows them a little")
    parser.add_argument("--profile", metavar="VARIANT",
                        help="in-process instead: one variant's CPU per message (and cProfile)")
    parser.add_argument("-n", type=int, default=3000, help="--profile: messages")
    parser.add_argument("--per-session", type=int, default=1, help="--profile: messages a session")
    parser.add_argument("--no-profile", action="store_true", help="--profile: just time it")
    parser.add_argument("--procs", type=int, default=1,
                        help="--profile: this many processes at once on one store (no cProfile)")
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--redis-port", type=int, default=6379,
                        help="--profile with a redis variant: a running redis-server")
    args = parser.parse_args()
    if args.profile:
        return profile(args)
    if os.environ.get("QPB_NETNS") != "1":
        env = dict(os.environ, QPB_NETNS="1")
        os.execvpe("unshare", ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
                               sys.executable, os.path.abspath(__file__), *sys.argv[1:]], env)
    if os.geteuid() != 0:
        raise SystemExit("run as root (servers switch to user nobody)")
    base = tempfile.mkdtemp(prefix="qpsmtpd-bench-state-")
    os.chmod(base, 0o755)
    nobody = pwd.getpwnam(R.USER)
    redis = start_redis(base)
    servers = []
    try:
        names = args.variants.split(",")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TCP", "QPSMTPD", "RELAY"))}
        for i, name in enumerate(names):
            stateful, files = VARIANTS[name.split("#")[0]]
            spool, store = os.path.join(base, f"spool-{name}"), os.path.join(base, f"store-{name}")
            for d in (spool, store):
                os.makedirs(d, mode=0o700)
                os.chown(d, nobody.pw_uid, nobody.pw_gid)
            config = os.path.join(base, f"config-{name}")
            write_config(config, spool, store, stateful, {"store_redis_prefix": f"bench-{name}:", **files})
            if stateful:
                whiten(config)
                for f in os.listdir(store):
                    os.chown(os.path.join(store, f), nobody.pw_uid, nobody.pw_gid)
            server_env = env
            if args.hook_costs:
                costs = os.path.join(base, f"hook-costs-{name}")
                os.makedirs(costs)
                os.chmod(costs, 0o777)
                server_env = dict(env, QPB_HOOK_COSTS=costs,
                                  PYTHONPATH=os.path.join(HERE, "hook_costs"))
            port = args.port + i
            argv = [os.path.join(R.BIN, "qpsmtpd-prefork"), "--listen-address", "127.0.0.1",
                    "--port", str(port), "--user", R.USER, "-H", "--config", config,
                    "--children", "60", "--idle-children", str(args.idle_children),
                    "--max-requests", str(args.max_requests)]
            servers.append(R.Server(name, argv, port, server_env, base, args.idle_children))
        scale = 0.2 if args.quick else args.scale
        print(f"# {time.strftime('%Y-%m-%d %H:%M')}  {os.cpu_count()} cores  {R.cpu_model()}  "
              f"{R.interpreter()}  load {R.loadavg()}  work dir {base}", flush=True)
        results, per_round = {}, {}
        for server in servers:
            server.start()
        for label, sessions, per, size, total in SCENARIOS:
            if args.only and args.only not in label:
                continue
            total = max(sessions * per, int(total * scale))
            for round_no in range(args.rounds):
                shift = round_no % len(servers)          # each round in another order
                for server in servers[shift:] + servers[:shift]:
                    rate, cpu = R.measure(server, sessions, total, per, size)
                    per_round.setdefault((label, server.name), []).append(rate)
                    best = results.get((label, server.name))
                    if best:
                        rate, cpu = max(rate, best[0]), min(cpu, best[1])
                    results[(label, server.name)] = (rate, cpu)
                print(f"  round {round_no + 1}: " + " | ".join(
                    f"{n} {per_round[(label, n)][-1]:.0f}/s" for n in names), flush=True)
            print(f"{label:22s} " + " | ".join(
                f"{n} {results[(label, n)][0]:6.0f}/s {results[(label, n)][1]:5.2f}ms" for n in names),
                flush=True)
            if "off" in names:
                print(paired(label, names, per_round), flush=True)
        print("\n| scenario | " + " | ".join(f"{n} msg/s | {n} CPU ms" for n in names)
              + " | " + " | ".join(f"{n} slowdown" for n in names if n != "off") + " |")
        print("|---|" + "---|" * (3 * len(names) - 1))
        for label, *_ in SCENARIOS:
            if (label, names[0]) not in results:
                continue
            row = [label.strip()]
            for n in names:
                row += [f"{results[(label, n)][0]:.0f}", f"{results[(label, n)][1]:.2f}"]
            if "off" in names:
                off = results[(label, "off")][0]
                row += [f"{(1 - results[(label, n)][0] / off) * 100:.1f} %" for n in names if n != "off"]
            print("| " + " | ".join(row) + " |")
        print(f"\nload average at the end: {R.loadavg()}")
        if R.FAILURES:
            print(f"{len(R.FAILURES)} run(s) failed and were repeated: {R.FAILURES}")
        check_state(base, names)
        if args.hook_costs:
            from hook_costs.report import report
            for name in names:
                print(f"\n{name}: CPU of each plugin's hooks (all scenarios)\n"
                      + report(os.path.join(base, f"hook-costs-{name}")))
    finally:
        for server in servers:
            server.stop()
        redis.terminate()
        redis.wait(10)
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


def paired(label, names, per_round):
    """Each variant against the off servers of the same round (their mean): the median
    slowdown over the rounds, and the lowest and highest. Steadier than the best of
    each server, because this machine's speed drifts from one minute to the next."""
    offs = [n for n in names if n.split("#")[0] == "off"]
    lines = [f"  paired with the off servers of the same round ({label.strip()}):"]
    for name in names:
        if name in offs and len(offs) == 1:
            continue
        base = [sum(per_round[(label, o)][r] for o in offs if o != name)
                / len([o for o in offs if o != name]) for r in range(len(per_round[(label, name)]))]
        slow = sorted((1 - rate / off) * 100 for rate, off in zip(per_round[(label, name)], base))
        lines.append(f"    {name}: median {statistics.median(slow):.1f} % slower "
                     f"(rounds {slow[0]:.1f} to {slow[-1]:.1f} %)")
    return "\n".join(lines)


def check_state(base, names):
    """The stateful servers really did the work: the white triplet's delivery count."""
    from qpsmtpd_py.config import Config
    from qpsmtpd_py.helpers.greylist import TABLE, client_key, parse_record
    from qpsmtpd_py.helpers.store import make_store
    for name in names:
        if any(p.startswith("greylisting") for p in VARIANTS[name.split("#")[0]][0]):
            store = make_store(Config([os.path.join(base, f"config-{name}")]))
            record = store.table(TABLE).get(client_key("127.0.0.1"))
            print(f"{name}: greylisting counted {parse_record(record)[3] - 1} deliveries of "
                  "127.0.0.1 (with white_refresh: the rewrites)")


if __name__ == "__main__":
    main()
