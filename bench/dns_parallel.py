"""The connect phase against a slow DNS server (issue 10 item 4): a session with 5 DNSBL
zones and fcrdns, the DNS server answering every query 1 s late.

A delaying DNS proxy on loopback (t/dnsproxy.py) sits in front of the test nsd of
t/services; each query is answered `--delay` seconds after it arrived, queries
overlapping as on a slow real server. The servers run `dnsbl` (5 zones of
dnsbl.test) and `fcrdns`, then rcpt_ok and a queue, as forkservers on 127.0.0.1; a
client connects from 127.0.0.1 (PTR mx.example.test, whose A record is 127.0.0.1:
fcrdns passes after a PTR and a forward lookup; no zone lists it, so every zone is
asked) and times each reply from the moment it connected:

  greeting, EHLO, RCPT (dnsbl's decision), end of DATA (fcrdns' iprev in the
  message's Authentication-Results), QUIT

    set -a; . /tmp/qpt-state/services.env; set +a
    .venv/bin/python bench/dns_parallel.py                 # ours, 3 sessions
    .venv/bin/python bench/dns_parallel.py --perl          # and Perl qpsmtpd 0.94

Perl runs under t/perlshim/LoopDNS.pm (its Net::DNS resolvers ask the proxy; libc
lookups fail at once, so its own PTR lookup of the client costs nothing). Only
loopback is used. The lookups our server makes are listed from the proxy's count.
"""

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "t"))

from dnsproxy import DNSProxy  # noqa: E402
from harness import bin_path, free_port  # noqa: E402

ZONES = ["dnsbl.test", "b.dnsbl.test", "c.dnsbl.test", "d.dnsbl.test", "e.dnsbl.test"]
STEPS = ("greeting", "EHLO", "RCPT", "DATA end", "QUIT")
MESSAGE = b"Subject: bench\r\n\r\nhello\r\n.\r\n"


def write(config, name, text):
    with open(os.path.join(config, name), "w") as fh:
        fh.write(text + "\n")


def make_config(root, proxy_port, perl):
    config = os.path.join(root, "config")
    os.makedirs(config)
    write(config, "me", "mx.example.test")
    write(config, "rcpthosts", "example.test")
    write(config, "dnsbl_zones", "\n".join(ZONES))
    write(config, "dns_servers", f"127.0.0.1:{proxy_port}")
    write(config, "dns_timeout", "5")
    write(config, "loglevel", "4")
    write(config, "spool_dir", os.path.join(root, "spool"))
    os.makedirs(os.path.join(root, "Maildir"))
    if perl:
        write(config, "plugin_dirs", "/usr/share/qpsmtpd/plugins")
    write(config, "plugins", "\n".join(["dnsbl", "fcrdns", "rcpt_ok",
                                        f"queue/maildir {os.path.join(root, 'Maildir')}"]))
    return config


def start_server(config, perl, proxy_port, log):
    port = free_port()
    env = dict(os.environ, QPSMTPD_CONFIG=config)
    if perl:
        env["LOOPDNS_SERVER"] = f"127.0.0.1:{proxy_port}"
        argv = ["perl", "-T", "-I", os.path.join(REPO, "t", "perlshim"), "-MLoopDNS",
                "/usr/bin/qpsmtpd-forkserver", "-l", "127.0.0.1", "-p", str(port), "-u", "root"]
    else:
        argv = [bin_path("qpsmtpd-forkserver"), "--config", config, "--allow-root",
                "-l", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            env=env, cwd=os.path.dirname(config))
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{argv[0]} did not start (see {log.name})")
            time.sleep(0.05)
    time.sleep(0.3)            # the probe connection above was a session too
    return proc, port


def session(port):
    """{step: (seconds since connect, reply code)} of one session."""
    start = time.monotonic()
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    reader = sock.makefile("rb")
    times = {}

    def reply(step):
        while True:
            line = reader.readline()
            if not line or line[3:4] != b"-":
                break
        times[step] = (time.monotonic() - start, line[:3].decode() if line else "EOF")
        return bool(line)

    steps = [("greeting", None), ("EHLO", b"EHLO bench.example.test\r\n"),
             (None, b"MAIL FROM:<bench@example.test>\r\n"), ("RCPT", b"RCPT TO:<u@example.test>\r\n"),
             (None, b"DATA\r\n"), ("DATA end", MESSAGE), ("QUIT", b"QUIT\r\n")]
    for step, data in steps:
        if data:
            sock.sendall(data)
        if not reply(step or "_"):
            break
    sock.close()
    return {k: v for k, v in times.items() if k in STEPS}


def run(name, perl, delay, sessions, upstream):
    with DNSProxy(upstream, delay=delay) as proxy, tempfile.TemporaryDirectory() as root:
        config = make_config(root, proxy.port, perl)
        with open(os.path.join(root, "server.log"), "wb") as log:
            proc, port = start_server(config, perl, proxy.port, log)
            try:
                before = proxy.count()
                results = [session(port) for _ in range(sessions)]
                queries = (proxy.count() - before) / sessions
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(10)
    print(f"\n{name}: {sessions} sessions, DNS answers delayed {delay:g} s, "
          f"{queries:.0f} DNS queries per session")
    print(f"  {'reply':10} {'median s':>9} {'min s':>7} {'max s':>7}  code")
    for step in STEPS:
        values = [r[step][0] for r in results if step in r]
        if not values:
            print(f"  {step:10} {'-':>9}")
            continue
        codes = sorted({r[step][1] for r in results if step in r})
        print(f"  {step:10} {statistics.median(values):9.2f} {min(values):7.2f} {max(values):7.2f}"
              f"  {','.join(codes)}")
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--delay", type=float, default=1.0, help="seconds each DNS answer is held")
    parser.add_argument("--sessions", type=int, default=3)
    parser.add_argument("--perl", action="store_true", help="also run Perl qpsmtpd 0.94")
    args = parser.parse_args()
    upstream = ("127.0.0.1", int(os.environ.get("QPT_DNS_PORT", "5353")))
    run("qpsmtpd_py", False, args.delay, args.sessions, upstream)
    if args.perl:
        run("Perl qpsmtpd 0.94", True, args.delay, args.sessions, upstream)


if __name__ == "__main__":
    main()
