#!/usr/bin/env python3
"""A reachable resolver for bench/run.py's reverse-DNS scenarios, on loopback inside
the benchmark's network namespace: PTR of 127.0.0.1 is client.example.test (TTL 300),
everything else NXDOMAIN.

    tiny_dns.py PORT
"""

import socket
import sys

import dns.message
import dns.rcode
import dns.rrset

PTRS = {"1.0.0.127.in-addr.arpa.": "client.example.test."}


def answer(wire):
    query = dns.message.from_wire(wire)
    reply = dns.message.make_response(query)
    question = query.question[0]
    target = PTRS.get(question.name.to_text().lower())
    if target and question.rdtype == dns.rdatatype.PTR:
        reply.answer.append(dns.rrset.from_text(question.name, 300, "IN", "PTR", target))
    else:
        reply.set_rcode(dns.rcode.NXDOMAIN)
    return reply.to_wire()


def main():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", int(sys.argv[1])))
    while True:
        wire, peer = sock.recvfrom(4096)
        try:
            sock.sendto(answer(wire), peer)
        except Exception as exc:                 # a broken query: ignore it
            print(f"tiny_dns: {exc}", file=sys.stderr)


if __name__ == "__main__":
    main()
