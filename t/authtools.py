"""Helpers for the sender-authentication tests (SPF, DKIM, DomainKeys, DMARC): header
fields of captured messages, their Authentication-Results parsed with authres, signing
with the test keys of t/services, and a milter conversation with the test opendkim."""

import os
import re
import socket

import authres


def reply(d, index):
    """(code, text) of reply `index` of a Dialogue, without the enhanced status code."""
    code, text = d.pairs[index]
    return code, re.sub(r"^[245]\.\d{1,3}\.\d{1,3} ", "", text)


def header_fields(header_text):
    """[(name, value)] of a header block (LF line ends; folded lines joined)."""
    fields = []
    for line in header_text.split("\n"):
        if line[:1] in (" ", "\t") and fields:
            fields[-1][1] += " " + line.strip()
        elif ":" in line:
            key, value = line.split(":", 1)
            fields.append([key, value.strip()])
    return [tuple(f) for f in fields]


def header_values(message, name):
    """The values of header field `name` of a captured message (t_capture dict)."""
    return [v for k, v in header_fields(message["header"]) if k.lower() == name.lower()]


def auth_results(message):
    """The Authentication-Results fields of a captured message, parsed by authres."""
    return [authres.AuthenticationResultsHeader.parse_value(v)
            for v in header_values(message, "Authentication-Results")]


def results_of(message, method):
    """The results for `method` in the message's one Authentication-Results field."""
    (ar,) = auth_results(message)
    return [r for r in ar.results if r.method == method]


def state_file(name):
    """A file of the test services' state directory (keys made by start-services.sh)."""
    state = os.environ.get("QPT_STATE")
    if not state:
        import pytest
        if os.environ.get("CI") == "true":
            pytest.fail("QPT_STATE is not set: the test services are missing (t/services)")
        pytest.skip("QPT_STATE not set (run through scripts/test)")
    return os.path.join(state, "dns", name)


def read_key(name):
    with open(state_file(name), "rb") as fh:
        return fh.read()


def nsd_txt(name, timeout=5):
    """A TXT record from the test nsd, as dkimpy's dnsfunc wants it (bytes)."""
    import dns.resolver
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [os.environ.get("QPT_DNS_HOST", "127.0.0.1")]
    resolver.port = int(os.environ.get("QPT_DNS_PORT", "5353"))
    try:
        answer = resolver.resolve(name.decode() if isinstance(name, bytes) else name, "TXT",
                                  lifetime=timeout)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return None
    return b"".join(answer[0].strings)


def split_message(data):
    """bytes (LF or CRLF) -> ([(name, value)], body bytes with CRLF)."""
    data = data.replace(b"\r\n", b"\n")
    head, _, body = data.partition(b"\n\n")
    return header_fields(head.decode("utf-8", "replace")), body.replace(b"\n", b"\r\n")


def milter(headers, body, ip, sender="a@example.test", rcpt="b@example.test"):
    """One message through the test opendkim milter; its replies at end of message.
    From 127.0.0.1 (an internal host) it signs for example.test; from elsewhere it
    verifies and adds Authentication-Results."""
    from miltertest import MilterConnection, constants as C
    sock = socket.create_connection((os.environ.get("QPT_MILTER_HOST", "127.0.0.1"),
                                     int(os.environ.get("QPT_MILTER_PORT", "8891"))), timeout=20)
    m = MilterConnection(sock)
    _act, prot = m.optneg_mta()
    m.send_macro(C.SMFIC_CONNECT, j="mx.example.test")
    m.send_ar(C.SMFIC_CONNECT, hostname="client.example.test", family=C.SMFIA_INET, port=25000,
              address=ip)
    m.send_ar(C.SMFIC_HELO, helo="client.example.test")
    m.send_macro(C.SMFIC_MAIL, i="QID1")
    m.send_ar(C.SMFIC_MAIL, args=[f"<{sender}>"])
    m.send_ar(C.SMFIC_RCPT, args=[f"<{rcpt}>"])
    if not prot & C.SMFIP_NODATA:
        m.send_ar(C.SMFIC_DATA)
    m.send_headers(headers)
    m.send_ar(C.SMFIC_EOH)
    m.send_body(body.decode("latin-1") if isinstance(body, bytes) else body)
    res = m.send_eom()
    m._send(C.SMFIC_QUIT)
    sock.close()
    return res


def milter_added(res, name):
    """Values of header field `name` that the milter added or inserted."""
    return [r[1]["value"] for r in res if r[0] in ("i", "h") and r[1]["name"] == name]
