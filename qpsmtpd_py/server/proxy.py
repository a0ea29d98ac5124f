"""The PROXY protocol (HAProxy's, versions 1 and 2) on a listener, so the server can
sit behind a load balancer (HAProxy, AWS NLB, nginx stream) and still see, log,
check and write into the Received line the real client's address.

A listener named by `--proxy-protocol PORT` expects every connection to start with
a PROXY header, before our greeting:
  v1  "PROXY TCP4 198.51.100.7 192.0.2.1 40123 25\\r\\n" (TCP6 likewise; UNKNOWN)
  v2  the 12-byte signature \\r\\n\\r\\n\\0\\r\\nQUIT\\n, version/command, family,
      length, addresses (TLVs after them are skipped)
Only proxies in `--proxy-from` (default 127.0.0.1 and ::1; IPs or CIDR blocks) may
send one: a connection from anywhere else, one without a valid header, or one whose
header does not come within PROXY_TIMEOUT seconds is closed before the greeting (and
logged), so nobody can claim another address by talking to the port directly. A
v2 LOCAL command or a v1 UNKNOWN header (the proxy's own health checks) keeps the
proxy's address.
"""

import ipaddress
import socket
import struct

from ..helpers.netmatch import IPList

PROXY_TIMEOUT = 10.0
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_MAX = 107                      # the longest v1 line, CRLF included (the spec's figure)
V2_MAX = 4096                     # addresses and TLVs we are willing to read
DEFAULT_TRUSTED = ("127.0.0.1", "::1")


class ProxyError(Exception):
    """The connection did not start with a PROXY header we accept; the text says why."""


class ProxyProtocol:
    """The listeners' policy: which ports expect the header, whom to trust."""

    def __init__(self, ports=(), trusted=None, timeout=PROXY_TIMEOUT):
        self.ports = set(ports)
        self.trusted_text = list(trusted or DEFAULT_TRUSTED)
        self.trusted = IPList()
        for entry in self.trusted_text:
            for part in str(entry).split(","):
                if part.strip():
                    _check_entry(part.strip())
                    self.trusted.add(part.strip())
        self.timeout = timeout

    def wanted(self, listener):
        return listener.port in self.ports

    def accept(self, sock, peer):
        """Read the header of a proxied connection: (client peer, local address)
        to use instead of the socket's. Raises ProxyError (the caller closes)."""
        ip = _plain_ip(peer[0])
        if not self.trusted.lookup(ip):
            raise ProxyError(f"{ip} is not a trusted proxy (--proxy-from)")
        old = sock.gettimeout()
        sock.settimeout(self.timeout)
        try:
            found = read_header(sock)
        except socket.timeout:
            raise ProxyError(f"no PROXY header from {ip} within {self.timeout:g} s") from None
        except OSError as exc:
            raise ProxyError(f"reading the PROXY header from {ip}: {exc}") from None
        finally:
            sock.settimeout(old)
        if found is None:                  # LOCAL / UNKNOWN: the proxy speaks for itself
            return peer, sock.getsockname()
        return found


def read_header(sock):
    """((src ip, src port), (dst ip, dst port)) from a v1 or v2 header, or None for a
    connection the proxy made on its own behalf. Reads exactly the header."""
    first = _read_exact(sock, 1)
    if first == b"P":
        return _v1(first, sock)
    if first == b"\r":
        return _v2(first + _read_exact(sock, 15), sock)
    raise ProxyError(f"no PROXY header (the connection began with {first!r})")


def _v1(start, sock):
    line = start
    while not line.endswith(b"\r\n"):
        if len(line) >= V1_MAX:
            raise ProxyError("PROXY v1 line too long")
        line += _read_exact(sock, 1)
    words = line[:-2].decode("ascii", "replace").split(" ")
    if words[0] != "PROXY" or len(words) < 2:
        raise ProxyError(f"bad PROXY v1 line {line[:60]!r}")
    if words[1] == "UNKNOWN":
        return None
    if words[1] not in ("TCP4", "TCP6") or len(words) != 6:
        raise ProxyError(f"bad PROXY v1 line {line[:60]!r}")
    version = 4 if words[1] == "TCP4" else 6
    src, dst = _address(words[2], version), _address(words[3], version)
    return (src, _port(words[4])), (dst, _port(words[5]))


def _v2(head, sock):
    if head[:12] != V2_SIGNATURE:
        raise ProxyError("no PROXY header (bad v2 signature)")
    version_command, family, length = head[12], head[13], struct.unpack("!H", head[14:16])[0]
    if version_command >> 4 != 2:
        raise ProxyError(f"PROXY v2: unknown version {version_command >> 4}")
    if length > V2_MAX:
        raise ProxyError(f"PROXY v2: header of {length} bytes")
    body = _read_exact(sock, length)
    command = version_command & 0x0F
    if command == 0x0:                         # LOCAL
        return None
    if command != 0x1:
        raise ProxyError(f"PROXY v2: unknown command {command}")
    if family == 0x11 and length >= 12:        # TCP over IPv4
        src, dst, sport, dport = struct.unpack("!4s4sHH", body[:12])
    elif family == 0x21 and length >= 36:      # TCP over IPv6
        src, dst, sport, dport = struct.unpack("!16s16sHH", body[:36])
    elif family == 0x00:                       # UNSPEC: addresses unknown
        return None
    else:
        raise ProxyError(f"PROXY v2: unsupported family/protocol 0x{family:02x}")
    return ((str(ipaddress.ip_address(src)), sport), (str(ipaddress.ip_address(dst)), dport))


def _read_exact(sock, size):
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ProxyError("connection closed before the PROXY header ended")
        data += chunk
    return data


def _address(text, version):
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ProxyError(f"PROXY v1: bad address {text[:50]!r}") from None
    if address.version != version:
        raise ProxyError(f"PROXY v1: {text} is not an IPv{version} address")
    return str(address)


def _port(text):
    if not text.isdigit() or not 0 <= int(text) < 65536 or (len(text) > 1 and text[0] == "0"):
        raise ProxyError(f"PROXY v1: bad port {text[:10]!r}")
    return int(text)


def _plain_ip(ip):
    address = ipaddress.ip_address(ip.split("%")[0])
    if address.version == 6 and address.ipv4_mapped:
        return str(address.ipv4_mapped)
    return str(address)


def _check_entry(text):
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"--proxy-from: '{text}' is not an IP address or CIDR block") from None
