"""nmap's smtp-open-relay script (Debian nmap) against qpsmtpd-prefork with the
sample config (etc/) on 127.0.0.1 (issue 16 point 10).

The script tries 16 MAIL/RCPT forms (null sender, our name, [ip] literals, the
percent hack, quoted locals, bang paths, source routes). The sample lets
relayclients (127.0.0.1) relay, so the scan comes from 127.0.0.2 (nmap -S): every
form must be refused and nmap must say "all tests failed". From 127.0.0.1 the same
scan is an open relay: that run shows the reading of nmap's trace can fail.

nmap touches nothing but 127.0.0.1: -Pn (no ping), -n (no DNS), -sT (a plain
connect), one port, and the script's domain and ip arguments are given so it
resolves no name. The server's own lookups go to the test DNS server
(t/services). `+smtp-open-relay` runs the script on a port that is not 25.
"""

import re
import subprocess

import pytest

from campaign import SampleConfig, ranged_port
from harness import service_env
from serverproc import Server
from tools import require_tool

SCRIPT_ARGS = "smtp-open-relay.domain=relay.example.net,smtp-open-relay.ip=127.0.0.1"
_LINE = re.compile(r"^(?:NSE: TCP \S+ ([<>]) \S+ \| )?(.*)$")
_HEX = re.compile(r"^[0-9a-f]{8}: ((?:[0-9a-f]{2} ){1,16})")


def run_nmap(port, source):
    argv = ["nmap", "-n", "-Pn", "-sT", "-S", source, "-e", "lo", "-p", str(port),
            "--script", "+smtp-open-relay", "--script-args", SCRIPT_ARGS,
            "--script-trace", "-vv", "127.0.0.1"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def conversation(trace):
    """[(direction, bytes)] of the script's SMTP session from --script-trace: '>' what
    nmap sent, '<' what the server answered (text lines, or hex dumps over lines)."""
    out, current = [], None
    for line in trace.splitlines():
        match = _LINE.match(line)
        direction, rest = match.groups()
        if direction:
            if rest in ("CONNECT", "SEND", "CLOSE") or rest.startswith("ERROR"):
                current = None
                continue
            current = [direction, bytearray()]
            out.append(current)
            hexed = _HEX.match(rest)
            if hexed:
                current[1] += bytes.fromhex(hexed.group(1))
            else:
                current[1] += rest.encode() + b"\r\n"
        elif current is not None and _HEX.match(line):
            current[1] += bytes.fromhex(_HEX.match(line).group(1))
        else:
            current = None
    return [(d, bytes(b)) for d, b in out]


def relay_attempts(trace):
    """[(MAIL line, its reply code, RCPT line or None, its reply code or None)]."""
    attempts, pending = [], None
    for direction, data in conversation(trace):
        if direction == ">":
            pending = data.decode("latin-1").strip()
            if pending.upper().startswith("MAIL FROM:"):
                attempts.append([pending, None, None, None])
            elif pending.upper().startswith("RCPT TO:") and attempts:
                attempts[-1][2] = pending
            continue
        code = int(data[:3])
        if pending and attempts:
            if pending.upper().startswith("MAIL FROM:"):
                attempts[-1][1] = code
            elif pending.upper().startswith("RCPT TO:"):
                attempts[-1][3] = code
        pending = None
    return [tuple(a) for a in attempts]


@pytest.fixture
def server(tmp_path):
    require_tool("nmap")
    # the sample as shipped, but names are looked up in the test DNS server (the
    # sample's 127.0.0.1:53 is not there: each PTR lookup would wait 5 s)
    config = SampleConfig(tmp_path, files={"dns_servers": f"127.0.0.1:{service_env('QPT_DNS_PORT')}"})
    with Server("qpsmtpd-prefork", config, "--children", "2", port=ranged_port()) as srv:
        yield srv


def test_nmap_finds_no_open_relay_from_a_stranger(server):
    trace = run_nmap(server.port, "127.0.0.2")
    assert "Server doesn't seem to be an open relay, all tests failed" in trace, trace[-2000:]
    attempts = relay_attempts(trace)
    assert len(attempts) == 16, attempts               # every form the script has
    for mail, mail_code, rcpt, rcpt_code in attempts:
        # a form refused at MAIL is not relayed either; one past MAIL must be refused at RCPT
        assert mail_code is not None, (mail, trace[-2000:])
        if mail_code == 250:
            assert rcpt is not None and rcpt_code is not None and rcpt_code >= 500, \
                (mail, rcpt, rcpt_code)
    log = server.log
    assert re.search(r"connect from \S* ?\[127.0.0.2\]", log), log[:2000]
    assert "Relaying denied" in log and "Traceback" not in log


def test_nmap_reading_sees_a_relay_client_as_open(server):
    """The control: 127.0.0.1 is in the sample's relayclients, so nmap must report an
    open relay and the trace must show RCPT accepted; a parser that saw nothing would
    pass the test above for the wrong reason."""
    trace = run_nmap(server.port, "127.0.0.1")
    assert re.search(r"Server is an open relay \((\d+)/16 tests\)", trace), trace[-2000:]
    accepted = [a for a in relay_attempts(trace) if a[3] == 250]
    assert accepted, relay_attempts(trace)
