"""ident/p0f - ask a running p0f (version 3) what operating system the client is,
from its TCP fingerprint, so other plugins can decide by it (greylist only Windows
clients: `greylisting p0f genre,windows`).

At connect the plugin sends p0f's documented query (p0f 3 README, "API") over its
unix socket - magic 0x50304601, address type 4 or 6, 16 address bytes - and reads the
232-byte answer. A match is kept in the connection note `p0f`, a dict with p0f's
fields (first_seen, last_seen, total_conn, uptime_min, up_mod_days, last_nat,
last_chg, distance, bad_sw, os_match_q, os_name, os_flavor, http_name, http_flavor,
link_type, language) and qpsmtpd's older names for the same facts (genre = os_name,
detail = os_flavor, link = link_type, uptime = whole hours of uptime_min).

Arguments:  SOCKET [version 3] [local_ip IP] [add_headers 0|1] [smite_os 0|1]
  SOCKET       p0f's API socket (p0f -s SOCKET)
  version      3 (p0f 2's protocol is not spoken: with `version 2` the plugin logs a
               warning at start-up and does nothing)
  local_ip     accepted for old configs (p0f 2 needed it); unused
  add_headers  add X-P0F-Genre, X-P0F-Detail, X-P0F-Distance, X-P0F-Link and
               X-P0F-Uptime to each message (default 1)
  smite_os     refuse (550 OS Blocked) every RCPT from a client whose OS matches a
               line of config/p0f_blocked_operating_systems (regular expressions,
               case-insensitive, matched against "os_name os_flavor"); default 0
Hooks: connect, rcpt, data_post. Loopback clients are not looked up. When p0f
cannot be reached, or does not know the client, nothing is noted and mail flows.
Example:  ident/p0f /run/p0f.sock smite_os 1
"""

import ipaddress
import re
import socket
import struct

from qpsmtpd_py.api import (
    DECLINED, DENY, LOGDEBUG, LOGERROR, LOGINFO, LOGWARN, Bool, Choice, Keyword, Path,
    Plugin, Positional, Text,
)

QUERY_MAGIC = 0x50304601
RESP_MAGIC = 0x50304602
STATUS_BADQUERY, STATUS_OK, STATUS_NOMATCH = 0x00, 0x10, 0x20
RESPONSE = struct.Struct("=IIIIIIIIIhBB32s32s32s32s32s32s")      # 232 bytes
FIELDS = ("magic", "status", "first_seen", "last_seen", "total_conn", "uptime_min",
          "up_mod_days", "last_nat", "last_chg", "distance", "bad_sw", "os_match_q",
          "os_name", "os_flavor", "http_name", "http_flavor", "link_type", "language")
TIMEOUT = 2.0


class P0f(Plugin):
    arguments = (
        Positional("SOCKET", Path(), None, "p0f's API socket", required=True),
        Keyword("version", Choice("3", "2"), "3", "p0f's version (only 3 is spoken)"),
        Keyword("local_ip", Text(), None, "p0f 2 only; accepted and unused"),
        Keyword("add_headers", Bool(), True, "add X-P0F-* header fields"),
        Keyword("smite_os", Bool(), False, "refuse OSes in config/p0f_blocked_operating_systems"),
    )

    def register(self, *args):
        self.socket = self.args["SOCKET"]
        self.active = self.args["version"] == "3"
        if not self.active:
            self.log(LOGWARN, "p0f version 2 is not supported: this plugin does nothing "
                              "(run p0f 3 and drop 'version 2')")

    def hook_connect(self, transaction):
        ip = self.connection.remote_ip
        if not self.active or not ip or ipaddress.ip_address(ip).is_loopback:
            return DECLINED
        try:
            answer = query(self.socket, ip)
        except (OSError, ValueError) as exc:
            self.log(LOGERROR, f"p0f: {exc}")
            return DECLINED
        if answer["magic"] != RESP_MAGIC:
            self.log(LOGERROR, "p0f: Bad response magic.")
        elif answer["status"] == STATUS_BADQUERY:
            self.log(LOGERROR, "p0f: bad query")
        elif answer["status"] == STATUS_NOMATCH:
            self.log(LOGINFO, "p0f: no match")
        elif answer["status"] == STATUS_OK:
            self.connection.notes["p0f"] = answer
            self.log(LOGINFO, f"{answer['os_name']} {answer['os_flavor']}".strip())
        return DECLINED

    def hook_rcpt(self, transaction, rcpt, params):
        if not self.args["smite_os"]:
            return DECLINED
        p0f = self.connection.notes.get("p0f")
        if not p0f or self.is_immune():
            return DECLINED
        os_text = f"{p0f.get('os_name', '')} {p0f.get('os_flavor', '')}".strip()
        for pattern in self.parsed_config("p0f_blocked_operating_systems", _patterns):
            if pattern.search(os_text):
                self.log(LOGINFO, f"fail, OS blocked: {os_text}")
                return DENY, "OS Blocked"
        return DECLINED

    def hook_data_post(self, transaction):
        p0f = self.connection.notes.get("p0f")
        if not p0f or not self.args["add_headers"]:
            return DECLINED
        for name, key in (("Genre", "genre"), ("Detail", "detail"), ("Distance", "distance"),
                          ("Link", "link"), ("Uptime", "uptime")):
            value = p0f.get(key)
            if value not in (None, ""):
                transaction.header.add(f"X-P0F-{name}", str(value))
        return DECLINED


def query(path, ip):
    """p0f's answer for `ip` as a dict (its fields plus qpsmtpd's older names)."""
    address = ipaddress.ip_address(ip)
    if address.version == 6 and address.ipv4_mapped:
        address = address.ipv4_mapped
    kind = 4 if address.version == 4 else 6
    packet = struct.pack("=IB", QUERY_MAGIC, kind) + address.packed.ljust(16, b"\0")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.connect(path)
        sock.sendall(packet)
        data = b""
        while len(data) < RESPONSE.size:
            chunk = sock.recv(RESPONSE.size - len(data))
            if not chunk:
                break
            data += chunk
    if len(data) < 8:
        raise ValueError(f"short answer ({len(data)} bytes)")
    if len(data) < RESPONSE.size:                 # BADQUERY/NOMATCH may come short
        data = data.ljust(RESPONSE.size, b"\0")
    values = dict(zip(FIELDS, RESPONSE.unpack(data)))
    for key in ("os_name", "os_flavor", "http_name", "http_flavor", "link_type", "language"):
        values[key] = values[key].split(b"\0")[0].decode("ascii", "replace")
    values.update(genre=values["os_name"], detail=values["os_flavor"],
                  link=values["link_type"], uptime=values["uptime_min"] // 60)
    return values


def _patterns(lines):
    out = []
    for line in lines:
        try:
            out.append(re.compile(line.strip(), re.I))
        except re.error:
            continue                  # a broken line blocks nothing
    return out
