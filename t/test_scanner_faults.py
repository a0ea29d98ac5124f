"""spamd, clamd and DNS killed mid-request under qpsmtpd-prefork (issue 16 point 10).

Each test starts its own real spamd or clamd on ports of this test (the shared ones in
/tmp/qpt-state are never touched; clamd loads the same two local EICAR signatures),
in a process group of its own so it can be frozen and killed whole. The scanner is
frozen (SIGSTOP: no answer can come any more) at one of two moments, the test checks
that no answer has reached the worker (else that trial missed and is run again), notes
how much of the request the scanner had not read, and SIGKILLs it: "sending" (frozen
before the message comes: the worker connects and sends until the socket buffer is
full, the request is half-way) and "scanning" (frozen once the scanner has read the
whole request, the worker's end of sending included, and not answered; spamd only:
its scan of the 300 KB message takes a second or more, while clamd answers the 2 MB
INSTREAM a few milliseconds after its last chunk, too soon to catch from outside). The client must get the plugin's documented
temp-fail (failure tempfail, the default: 452) within seconds, the message must not be
in the Maildir, and the same worker (--children 1) must take the next session and,
with the scanner back, deliver a scanned message.

DNS: the server's resolver goes through a relay (t/dnsfault.py) that stops answering
between two MAIL commands of one session: resolvable_fromhost answers `450
Temporary address resolution failure` within dns_timeout, the session goes on, and the
worker serves the next session when DNS is back.
"""

import os
import signal
import subprocess
import time

import pytest

from campaign import ranged_port
from dnsfault import DNSRelay
from harness import Client, service_env
from scanhelp import EICAR, message
from serverproc import Server, wait_until
from tools import sbin

KILLS = int(os.environ.get("QPT_FAULT_KILLS", "1"))   # kills per case (by hand: more)
MISSES = 3 + KILLS  # trials that miss (the scanner answered before it was frozen) allowed


class PrivateScanner:
    """A real spamd or clamd of this test, in its own process group."""

    def __init__(self, kind, tmp):
        self.kind, self.tmp = kind, str(tmp)
        self.port = ranged_port()
        self.proc = None

    def argv(self):
        if self.kind == "spamd":
            home = os.path.join(self.tmp, "spamd-home")
            os.makedirs(home, exist_ok=True)
            subprocess.run(["chown", "debian-spamd:debian-spamd", home], check=True)
            return [sbin("spamd"), "--listen", f"127.0.0.1:{self.port}", "--allowed-ips=127.0.0.1",
                    "--local", "--max-children=1", "--min-children=1", "--username=debian-spamd",
                    "--groupname=debian-spamd", f"--helper-home-dir={home}",
                    f"--syslog={self.tmp}/spamd.log"]
        conf = os.path.join(self.tmp, "clamd.conf")
        with open(conf, "w") as fh:
            fh.write(f"TCPSocket {self.port}\nTCPAddr 127.0.0.1\n"
                     f"DatabaseDirectory {service_env('QPT_CLAMAV_DB')}\n"
                     f"LogFile {self.tmp}/clamd.log\nForeground yes\nSelfCheck 0\n"
                     "MaxThreads 2\nStreamMaxLength 25M\nScanMail yes\n")
        return [sbin("clamd"), "-c", conf]

    def start(self):
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        ping = (b"PING SPAMC/1.5\r\n\r\n", b"PONG") if self.kind == "spamd" else (b"PING\n", b"PONG")
        wait_until(lambda: self._answers(*ping), 30, 0.05, what=f"private {self.kind}")
        return self

    def _answers(self, request, expect):
        import socket
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.kind} exited with {self.proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                s.sendall(request)
                return expect in s.recv(100)
        except OSError:
            return False

    def signal(self, signum):
        try:
            os.killpg(self.proc.pid, signum)          # its own group: spamd and its children
        except ProcessLookupError:
            pass

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.signal(signal.SIGKILL)
            self.proc.wait(10)

    def plugin_line(self):
        if self.kind == "spamd":
            return f"spamassassin spamd_socket 127.0.0.1:{self.port} reject 10 timeout 10"
        return f"virus/clamdscan clamd_host 127.0.0.1 clamd_port {self.port} timeout 10 max_size 4096"


OPEN_STATES = {"01": "established", "04": "fin-wait-1", "05": "fin-wait-2", "08": "close-wait"}


def tcp_sockets():
    """[(local port, remote port, tx_queue, rx_queue, state)] of the IPv4 TCP sockets of a
    connection still open on at least one side (the worker shuts down its sending side
    once the request is out: then the scanner's socket is in close-wait)."""
    out = []
    with open("/proc/net/tcp") as fh:
        next(fh)
        for line in fh:
            f = line.split()
            if f[3] not in OPEN_STATES:
                continue
            tx, rx = (int(x, 16) for x in f[4].split(":"))
            out.append((int(f[1].split(":")[1], 16), int(f[2].split(":")[1], 16), tx, rx,
                        OPEN_STATES[f[3]]))
    return out


def connect(server):
    client = server.client(timeout=30)
    assert client.code == 220, client.text
    return client


def begin_message(client, sender="a@b.test"):
    client.ehlo()
    assert client.cmd(f"MAIL FROM:<{sender}>")[0] == 250
    assert client.cmd("RCPT TO:<u@example.test>")[0] == 250
    assert client.cmd("DATA")[0] == 354


def deliver(server, text):
    """(code, lines) of the reply to one message in a session of its own."""
    client = connect(server)
    begin_message(client)
    client.send(wire(text))
    reply = client.read_reply()
    client.cmd("QUIT")
    client.close()
    return reply


def wire(text):
    return text.replace("\n", "\r\n") + ".\r\n"


def request_consumed(port):
    """The scanner has read the whole request, up to the worker's end of sending
    (its socket in close-wait, nothing unread), and has not answered yet."""
    sockets = tcp_sockets()
    scanner = [x for x in sockets if x[0] == port]
    worker = [x for x in sockets if x[1] == port]
    return scanner and worker and all(x[4] == "close-wait" and not x[3] for x in scanner) \
        and not any(x[3] for x in worker)


def kill_mid_request(server, scanner, text, phase):
    """One trial: freeze the scanner before the message comes (phase "sending": the
    worker connects and sends into its socket, then the scanner is killed with the
    request half-way), or once it has read the whole request and not answered
    ("scanning"), then kill it. (reply code, text, seconds from the kill to the
    reply, bytes of the request the scanner had not read), or None when the scanner
    answered before it was frozen."""
    client = connect(server)
    begin_message(client)
    if phase == "sending":
        scanner.signal(signal.SIGSTOP)      # it will not read past its socket buffer
    client.send(wire(text))
    deadline = time.monotonic() + 10
    while not [s for s in tcp_sockets() if s[0] == scanner.port]:
        if time.monotonic() > deadline:      # answered and closed before we looked
            client.read_reply()
            client.close()
            return None
        time.sleep(0.001)
    if phase == "scanning":
        deadline = time.monotonic() + 10
        while not request_consumed(scanner.port) and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(0.002)
    else:
        time.sleep(0.1)                     # the worker fills the frozen scanner's buffer
    scanner.signal(signal.SIGSTOP)
    sockets = tcp_sockets()
    open_now = [s for s in sockets if s[0] == scanner.port]
    answered = not open_now or any(s[3] for s in sockets if s[1] == scanner.port)
    unread = sum(s[3] for s in open_now)
    state = ",".join(s[4] for s in open_now)
    scanner.signal(signal.SIGKILL)
    killed = time.monotonic()
    scanner.proc.wait(10)
    code, lines = client.read_reply()
    took = time.monotonic() - killed
    client.cmd("QUIT")
    client.close()
    if answered or (phase == "scanning" and (unread or state != "close-wait")):
        return None
    return code, " ".join(lines), took, unread, state


SPAM_TEXT = message("Hello Bob,\n" + "lunch at noon? " * 20000 + "\n")      # 300 KB
VIRUS_TEXT = message("x" * 2_000_000 + "\n" + EICAR + "\n")
SPAMD_REPLY = "Unable to scan the message, try again later"
CLAMD_REPLY = "Unable to scan for viruses"


@pytest.mark.parametrize("kind, phase, text, reply", [
    ("spamd", "sending", SPAM_TEXT, SPAMD_REPLY), ("spamd", "scanning", SPAM_TEXT, SPAMD_REPLY),
    ("clamd", "sending", VIRUS_TEXT, CLAMD_REPLY),
])
def test_scanner_killed_mid_request_tempfails_and_the_worker_goes_on(mail_config, tmp_path,
                                                                      kind, phase, text, reply):
    scanner = PrivateScanner(kind, tmp_path).start()
    srv = mail_config(scanner.plugin_line(), files={"loglevel": "6"})
    try:
        with Server("qpsmtpd-prefork", srv, "--children", "1", "--idle-children", "1",
                    port=ranged_port()) as server:
            wait_until(lambda: len(server.children()) == 1, what="the worker")
            (worker,) = server.children()
            # a first message is scanned and delivered (clamdscan also caches clamd's
            # VERSION then, so the killed exchange below is the INSTREAM itself)
            assert deliver(server, message("Hello first\n"))[0] == 250
            results, missed = [], 0
            while len(results) < KILLS and missed < MISSES:
                if scanner.proc.poll() is not None:
                    scanner.start()
                result = kill_mid_request(server, scanner, text, phase)
                missed += result is None
                if result:
                    results.append(result)
            assert len(results) == KILLS, f"{missed} trials missed, {len(results)} kills"
            unread = [r[3] for r in results]
            print(f"\n{kind} killed while {phase}: {KILLS} kills ({missed} trials missed), "
                  f"request unread {min(unread)}-{max(unread)} bytes, sockets "
                  f"{sorted(set(r[4] for r in results))}, replies {sorted(set(r[0] for r in results))}, "
                  f"reply {max(r[2] for r in results):.3f}s after the kill at worst")
            for code, said, took, _, _ in results:
                assert code == 452 and reply in said, (code, said)
                assert took < 3, took                           # no hung worker
            assert len(srv.messages()) == 1                      # nothing unscanned got 250
            # scanner gone: refused at once, the same worker
            started = time.monotonic()
            assert deliver(server, message("hi\n"))[0] == 452
            assert time.monotonic() - started < 3
            # scanner back: the same worker delivers a scanned message
            scanner.start()
            code, lines = deliver(server, message("Hello again\n"))
            assert code == 250, lines
            assert list(server.children()) == [worker]
            first, delivered = srv.messages()
            assert b"Hello again" in delivered
            assert (b"X-Spam-Status" if kind == "spamd" else b"X-Virus-Checked") in delivered
            assert "Traceback" not in server.log
    finally:
        scanner.stop()


def test_dns_stops_answering_mid_session(mail_config):
    with DNSRelay() as relay:
        srv = mail_config("resolvable_fromhost", files={
            "loglevel": "6", "dns_servers": relay.address, "dns_timeout": "2"})
        with Server("qpsmtpd-prefork", srv, "--children", "1", "--idle-children", "1",
                    port=ranged_port()) as server:
            wait_until(lambda: len(server.children()) == 1, what="the worker")
            (worker,) = server.children()
            client = connect(server)
            client.ehlo()
            assert client.cmd("MAIL FROM:<a@example.test>")[0] == 250      # DNS answers
            assert client.cmd("RSET")[0] == 250
            relay.silent = True                                            # DNS is gone
            started = time.monotonic()
            code, text = client.cmd("MAIL FROM:<b@aonly.dnscheck.test>")
            took = time.monotonic() - started
            print(f"\nDNS silent mid-session: {code} {text} after {took:.2f}s")
            assert code == 450 and "Temporary address resolution failure" in text, text
            assert took < 4                                                # dns_timeout 2
            assert client.cmd("NOOP")[0] == 250                            # the session goes on
            client.cmd("QUIT")
            client.close()
            relay.silent = False                                           # DNS is back
            client = connect(server)
            client.ehlo()
            code, _ = client.send_message("c@mixmx.dnscheck.test", ["u@example.test"],
                                          "Subject: after\n\nDNS is back", ehlo=False)
            assert code == 250
            client.cmd("QUIT")
            client.close()
            assert list(server.children()) == [worker]
            assert len(srv.messages()) == 1 and "Traceback" not in server.log
