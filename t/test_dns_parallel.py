"""Issue 10 item 4: the connect-time lookups of every list zone, dns_whitelist_soft and
fcrdns (and the engine's PTR lookup) run in parallel. Against the real nsd behind a
proxy that holds every answer 0.5 s: the RCPT decision comes after one round trip,
not eight; the message (fcrdns needs its forward lookup after the PTR) after two.
bench/dns_parallel.py measures the same with a 1 s delay and against Perl 0.94."""

import time

from dnsproxy import DNSProxy
from harness import service_env

DELAY = 0.5
ZONES = ["dnsbl.test", "b.dnsbl.test", "c.dnsbl.test", "d.dnsbl.test", "e.dnsbl.test"]


def test_connect_phase_costs_one_round_trip(session_server):
    with DNSProxy(("127.0.0.1", int(service_env("QPT_DNS_PORT"))), delay=DELAY) as proxy:
        server = session_server("dns_whitelist_soft", "dnsbl", "fcrdns", rdns=True, files={
            "dnsbl_zones": "\n".join(ZONES), "whitelist_zones": "dnswl.test",
            "dns_servers": f"127.0.0.1:{proxy.port}", "dns_timeout": "5"})
        marks = {}
        start = time.monotonic()
        d = server.talk("EHLO client.example.test", "MAIL FROM:<a@example.test>",
                        "RCPT TO:<u@example.test>", lambda: marks.setdefault("rcpt", time.monotonic()),
                        "DATA", b"Subject: t\r\n\r\nbody\r\n.\r\n",
                        lambda: marks.setdefault("data", time.monotonic()), "QUIT",
                        remote_ip="127.0.0.1")
    assert d.codes == [220, 250, 250, 250, 354, 250, 221]
    rcpt, data = marks["rcpt"] - start, marks["data"] - start
    assert DELAY <= rcpt < 1.6 * DELAY, rcpt                  # not 8 * DELAY
    assert 2 * DELAY <= data < 2.6 * DELAY, data
    assert "iprev=pass" in d.messages[0]["header"]
    # PTR, 5 zones, A and TXT of the whitelist zone, then A and AAAA of the PTR name
    assert proxy.count() == 10
