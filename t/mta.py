"""Private Postfix and Exim instances that relay everything to a test server.

    with PostfixRelay(port) as pf:          # its own config and queue, no listener
        pf.submit(message, "rcpt@example.test")     # sendmail -C <config>
        pf.wait_until_empty()
    exim = EximClient(exim_bin, port)       # a smarthost client, delivery in the foreground
    exim.submit(message, "rcpt@example.test")

Both live in a directory under /tmp (mode 755, not the test's tmp dir): their
daemons drop privileges (postfix, Debian-exim) and must reach their queues.
Postfix is started by `postfix start` and stopped by its master's pid; Exim runs
only while `submit` does (-odi).  Neither looks up DNS: the relay is an IP literal.
private_postfix() writes the private Postfix config; bench/run.py uses it too (its
discarding smtpd peer).
"""

import os
import shutil
import signal
import subprocess
import tempfile
import time

SENDER = "sender@example.test"


def private_dir(prefix):
    path = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(path, 0o755)
    return path


def run(argv, timeout=120, **kw):
    """Run a command; its output (stdout + stderr) and status, never raising on failure."""
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=timeout, **kw)
    return proc.returncode, proc.stdout.decode("utf-8", "replace")


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


POSTFIX_BASE = {   # every private Postfix: own queue and log, loopback, no DNS, no aliases
    "compatibility_level": "3.6", "mail_owner": "postfix", "setgid_group": "postdrop",
    "mydomain": "example.test", "mydestination": "", "inet_interfaces": "127.0.0.1",
    "inet_protocols": "ipv4", "mynetworks": "127.0.0.0/8", "smtp_dns_support_level": "disabled",
    "alias_maps": "", "alias_database": "", "biff": "no",
}


def postconf(etc, *args):
    code, out = run(["postconf", "-c", etc, *args])
    if code != 0:
        raise RuntimeError(f"postconf {' '.join(args)}: {out}")


def private_postfix(directory, settings, services=()):
    """Write a Postfix config_directory (DIR/etc) and queue (DIR/spool) of its own:
    POSTFIX_BASE plus `settings` in main.cf, Debian's master.cf without its port-25
    listener and without chroot, plus `services` (postconf -M entries). Used by the
    tests (PostfixRelay) and by bench/run.py (a discarding smtpd peer).
    Returns (etc, spool, maillog)."""
    etc, spool = os.path.join(directory, "etc"), os.path.join(directory, "spool")
    data, maillog = os.path.join(directory, "data"), os.path.join(directory, "maillog")
    for d in (etc, spool, data):
        os.makedirs(d)
    shutil.chown(data, "postfix")
    shutil.copy("/etc/postfix/master.cf", os.path.join(etc, "master.cf"))
    main = {**POSTFIX_BASE, "queue_directory": spool, "data_directory": data,
            "maillog_file_prefixes": directory, "maillog_file": maillog, **settings}
    with open(os.path.join(etc, "main.cf"), "w") as fh:
        fh.write("".join(f"{key} = {value}\n" for key, value in main.items()))
    postconf(etc, "-M#", "smtp/inet")                  # no listener on port 25
    postconf(etc, "-F", "*/*/chroot = n")
    for service in services:
        postconf(etc, "-M", service)
    return etc, spool, maillog


def postfix_master_pid(spool, timeout=10):
    """The pid in spool/pid/master.pid once its process is alive, else None."""
    path = os.path.join(spool, "pid", "master.pid")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path) as fh:
                pid = int(fh.read().strip() or 0)
            if pid and _alive(pid):
                return pid
        except (OSError, ValueError):
            pass
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


class PostfixRelay:
    """A Postfix with its own config_directory and queue_directory whose relayhost is
    [127.0.0.1]:<port>; mail is submitted with its sendmail (pickup), not over SMTP."""

    def __init__(self, port, myhostname="postfix.example.test"):
        self.dir = private_dir("qpt-postfix-")
        self.pid = None
        try:
            self.etc, self.spool, self.maillog = private_postfix(self.dir, {
                "myhostname": myhostname, "myorigin": "$mydomain",
                "relayhost": f"[127.0.0.1]:{port}", "smtp_host_lookup": "native",
                "smtp_line_length_limit": "998", "message_size_limit": "52428800",
                "mailbox_size_limit": "0", "local_transport": "error:local delivery disabled"})
            code, out = run(["postfix", "-c", self.etc, "start"], stdin=subprocess.DEVNULL)
            if code != 0:
                raise RuntimeError(f"postfix start failed ({code}): {out}\n{self.log()}")
            self.pid = self._master_pid()
        except BaseException:
            self.stop()
            raise

    def _master_pid(self, timeout=10):
        pid = postfix_master_pid(self.spool, timeout)
        if not pid:
            raise RuntimeError(f"postfix wrote no master.pid in {timeout}s\n{self.log()}")
        return pid

    def submit(self, message, rcpt, sender=SENDER):
        """sendmail -C <config> -oi -f sender rcpt < message; returns (status, output)."""
        return run(["sendmail", "-C", self.etc, "-oi", "-f", sender, rcpt], input=message)

    def queue(self):
        """postqueue -p: the queue listing ("Mail queue is empty" when it is)."""
        return run(["postqueue", "-c", self.etc, "-p"])[1]

    def log(self):
        try:
            with open(self.maillog, "rb") as fh:
                return fh.read().decode("utf-8", "replace")[-4000:]
        except OSError:
            return "(no maillog)"

    def stop(self):
        if self.pid and _alive(self.pid):
            os.kill(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while _alive(self.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(self.pid):
                os.kill(self.pid, signal.SIGKILL)
        self.pid = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class EximClient:
    """Exim 4 (unpacked by t/services, QPT_EXIM_BIN) with a config of its own: a
    manualroute router sends every address to 127.0.0.1::<port>.  `-C` drops root
    privilege to the Exim user, so spool and log belong to Debian-exim."""

    USER = "Debian-exim"

    def __init__(self, exim_bin, port, primary_hostname="exim.example.test"):
        self.bin = exim_bin
        self.dir = private_dir("qpt-exim-")
        self.conf = os.path.join(self.dir, "exim.conf")
        spool = os.path.join(self.dir, "spool")
        self.logdir = os.path.join(self.dir, "log")
        for d in (spool, self.logdir):
            os.makedirs(d)
            shutil.chown(d, self.USER, self.USER)
        with open(self.conf, "w") as fh:
            fh.write(f"""exim_path = {exim_bin}
primary_hostname = {primary_hostname}
qualify_domain = example.test
spool_directory = {spool}
log_file_path = {self.logdir}/%slog
exim_user = {self.USER}
exim_group = {self.USER}
trusted_users = root
no_local_from_check
host_lookup =
rfc1413_hosts =
message_size_limit = 50M
keep_environment =

begin routers
smarthost:
  driver = manualroute
  domains = *
  route_list = * 127.0.0.1::{port}
  transport = remote_smtp
  self = send
  no_more

begin transports
remote_smtp:
  driver = smtp
  allow_localhost
  hosts_avoid_tls = *

begin retry
* * F,1m,1m
""")
        os.chmod(self.conf, 0o644)

    def submit(self, message, rcpt, sender=SENDER):
        """exim -odi -oi -f sender rcpt < message: accepted and delivered before it
        returns.  Its status is 0 even when the delivery failed: see mainlog()/queue_count()."""
        return run([self.bin, "-C", self.conf, "-odi", "-oi", "-f", sender, rcpt], input=message)

    def queue_count(self):
        code, out = run([self.bin, "-C", self.conf, "-bpc"], timeout=20)
        return int(out.strip().splitlines()[-1]) if code == 0 else f"exim -bpc failed: {out}"

    def mainlog(self):
        try:
            with open(os.path.join(self.logdir, "mainlog"), "rb") as fh:
                return fh.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)
