"""stunnel - take the client's address from a PROXY (version 1) command, as stunnel's
`protocol = proxy` (and HAProxy's send-proxy) put it in front of the SMTP dialogue.

    PROXY TCP4 198.51.100.7 192.0.2.1 40123 465

The line gets no reply. The connection then carries the real client's address and
port, its host name (a fresh PTR lookup) and these notes: proxy (YES), protocol
(TCP4/TCP6), remote_ip, remote_port, local_ip, local_port. The command is refused
and the connection closed (521) when it comes from anyone but `trusted`, comes a
second time, or is malformed.

Arguments:  proxy on|off   on: accept the command (qpsmtpd's switch; off, or without
                           it, PROXY stays an unknown command)
            trusted IPS    who may send it, comma list, default 127.0.0.1,::1
                           (qpsmtpd: 127.0.0.1 only)
Hooks: unrecognized_command.  Example:  stunnel proxy on

Prefer the listener option `--proxy-protocol PORT` (docs/servers.md) where you can:
it reads the header (v1 or v2) before the greeting, so the connect hooks and
pre-connection plugins see the real client too; this plugin runs after them.
"""

import ipaddress

from qpsmtpd_py.api import (
    DECLINED, DENY_DISCONNECT, DONE, IPList, LOGINFO, LOGWARN, Choice, DNSFailure, Keyword,
    Plugin, Text,
)


class Stunnel(Plugin):
    arguments = (
        Keyword("proxy", Choice("on", "off"), "off", "accept the PROXY command"),
        Keyword("trusted", Text(), "127.0.0.1,::1", "who may send it (comma list)"),
    )

    def register(self, *args):
        self.enabled = self.args["proxy"] == "on"
        self.trusted = IPList(t.strip() for t in self.args["trusted"].split(",") if t.strip())
        if self.enabled:
            self.log(LOGINFO, "proxy protocol enabled")

    def hook_unrecognized_command(self, transaction, verb, rest=""):
        if verb.lower() != "proxy" or not self.enabled:
            return DECLINED
        conn = self.connection
        if not self.trusted.lookup(conn.remote_ip):
            self.log(LOGWARN, f"fail, PROXY from untrusted {conn.remote_ip}")
            return DENY_DISCONNECT, "PROXY not allowed"
        if conn.notes.get("proxy"):
            self.log(LOGWARN, "fail, a second PROXY command")
            return DENY_DISCONNECT, "PROXY already given"
        try:
            protocol, remote_ip, local_ip, remote_port, local_port = parse(rest)
        except ValueError as exc:
            self.log(LOGWARN, f"fail, bad PROXY command: {exc}")
            return DENY_DISCONNECT, "Bad PROXY command"
        conn.remote_ip, conn.remote_port = remote_ip, remote_port
        conn.remote_info = None
        conn.notes.update({"proxy": "YES", "protocol": protocol, "remote_ip": remote_ip,
                           "remote_port": remote_port, "local_ip": local_ip,
                           "local_port": local_port})
        try:
            names = self.resolver.ptr(remote_ip)
        except DNSFailure as exc:
            self.log(LOGINFO, f"PTR lookup for {remote_ip} failed: {exc}")
            names = []
        conn.remote_host = names[0] if names else None
        self.log(LOGINFO, f"stunnel : {remote_ip}:{remote_port}")
        return DONE


def parse(rest):
    """'TCP4 src dst sport dport' -> (protocol, src, dst, sport, dport)."""
    words = rest.split()
    if len(words) != 5 or words[0] not in ("TCP4", "TCP6"):
        raise ValueError(repr(rest[:80]))
    version = 4 if words[0] == "TCP4" else 6
    for ip in words[1:3]:
        if ipaddress.ip_address(ip).version != version:
            raise ValueError(f"{ip} is not an IPv{version} address")
    ports = []
    for port in words[3:5]:
        if not port.isdigit() or int(port) > 65535:
            raise ValueError(f"bad port {port!r}")
        ports.append(int(port))
    return (words[0], str(ipaddress.ip_address(words[1])), str(ipaddress.ip_address(words[2])),
            ports[0], ports[1])
