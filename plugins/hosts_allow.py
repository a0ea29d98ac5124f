"""hosts_allow - decide before the greeting whether a host may connect at all.

Two checks, in the pre-connection hook (so only qpsmtpd-prefork and
qpsmtpd-forkserver use it; for `qpsmtpd` under tcpserver/inetd use tcprules or
the super-server's own limits):

1. Concurrent connections from one IP. The server passes its --max-from-ip as
   max_conn_ip and the IPs of the other running sessions as child_addrs; when this
   connection would make more than max_conn_ip, the client gets
   `451 too many connections from <ip>, try again later`. Without this plugin
   --max-from-ip does nothing. IPv4 clients on a dual-stack [::] listener count as
   IPv4 (qpsmtpd bug #315 does not apply). With the karma plugin listed before
   this one, the limit follows the client's history (connection note
   karma_history, as qpsmtpd does): above 5 it is 3 higher, at 0 or below (an
   unknown or naughty client) it is 1.

2. The config file `hosts_allow`, one rule a line, first match wins:

       IP[/PREFIX]  RETCODE  [message returned to the client]

   IP is IPv4 or IPv6 (IPv4-mapped IPv6 such as ::ffff:192.0.2.1 means the IPv4
   address); without /PREFIX it matches that address only. RETCODE is a return
   code name: DENY (550), DENYSOFT (451), DENY_DISCONNECT, DENYSOFT_DISCONNECT,
   OK (accept, skip later pre-connection plugins) or DECLINED (no decision: use it
   to exempt a host from a broader rule below it). Lines starting with # are
   comments. A malformed line stops start-up, naming the file and line.

Example config/hosts_allow:

    192.168.3.4      DECLINED
    192.168.3.0/24   DENY Sorry, known spam only source
    2001:db8:bad::/48 DENYSOFT Not now

Arguments: none.  Hooks: pre-connection.  Example config/plugins line: hosts_allow
"""

import ipaddress

from qpsmtpd_py.api import (
    DECLINED, DENYSOFT, DENY_CODES, LOGDEBUG, LOGERROR, LOGINFO, Plugin, parse_ip, return_code,
)

_MAPPED = ipaddress.ip_network("::ffff:0:0/96")


def parse_rule(line):
    """'10.0.0.0/8 DENY go away' -> (network, code, message); raises ValueError."""
    parts = line.split(None, 2)
    if len(parts) < 2:
        raise ValueError("expected 'IP[/PREFIX] RETCODE [message]'")
    address, name = parts[0], parts[1]
    try:
        network = ipaddress.ip_network(address, strict=False)
    except ValueError:
        raise ValueError(f"'{address}' is not an IP address or network")
    if network.version == 6 and network.subnet_of(_MAPPED) and network.prefixlen >= 96:
        network = ipaddress.ip_network(
            f"{network.network_address.ipv4_mapped}/{network.prefixlen - 96}")
    code = return_code(name)
    if code is None:
        raise ValueError(f"'{name}' is not a return code (DENY, DENYSOFT, OK, DECLINED ...)")
    return network, code, parts[2].strip() if len(parts) > 2 else ""


def karma_bump(karma, limit):
    """qpsmtpd's karma_bump: +3 for a history above 5, 1 for none or a bad one."""
    if karma > 5:
        return limit + 3
    if karma <= 0:
        return 1
    return limit


def same_ip(a, b):
    return a is not None and a == parse_ip(b)


class HostsAllow(Plugin):
    arguments = ()                # none but loglevel: anything else stops start-up

    def register(self, *args):
        for line in self.rule_lines():
            try:
                parse_rule(line)
            except ValueError as exc:
                raise ValueError(f"{line.origin}: {exc}")

    def rule_lines(self):
        return [l for l in self.config_list("hosts_allow") if l.strip() and not l.lstrip().startswith("#")]

    def hook_pre_connection(self, transaction, args):
        remote = args.get("remote_ip", "")
        ip = parse_ip(remote)
        limit = int(args.get("max_conn_ip") or 0)
        karma = self.connection.notes.get("karma_history") if self.connection is not None else None
        if limit and karma is not None:
            limit = karma_bump(karma, limit)
        if limit:
            count = 1 + sum(1 for other in args.get("child_addrs") or () if same_ip(ip, other))
            if count > limit:
                message = f"too many connections from {remote}"
                self.log(LOGINFO, f"fail: {message} ({count} > {limit})")
                return DENYSOFT, f"{message}, try again later"
        if ip is None:
            return DECLINED
        for line in self.rule_lines():
            try:
                network, code, message = parse_rule(line)
            except ValueError as exc:
                self.log(LOGERROR, f"{line.origin}: {exc}; line skipped")
                continue
            if ip.version == network.version and ip in network:
                self.log(LOGINFO if code in DENY_CODES else LOGDEBUG,
                         f"{'fail' if code in DENY_CODES else 'pass'}: {remote} matches {line.origin}")
                return (code, message) if message else code
        self.log(LOGDEBUG, "pass")
        return DECLINED
