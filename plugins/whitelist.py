"""whitelist - exempt known hosts, HELO names, senders and recipients from later checks.

Each list is a config file, one entry a line (`#` comments, `$include` as usual):

  whitelisthosts    client IPs: 192.0.2.7, an octet prefix (192.168. or 10.1, taken
                    as 10.1.), a CIDR block (2001:db8::/32). Lines that are none of
                    these are logged with file and line and ignored.
  whitelisthelo     HELO/EHLO names, exact and case-insensitive
  whitelistsenders  envelope senders: user@example.org, or a domain (example.org
                    or @example.org) for every sender in it; case-insensitive
  whitelistrcpt     recipients, in the same forms as whitelistsenders

Environment: WHITELISTCLIENT (set by tcpserver rules, even empty) whitelists the
client like a whitelisthosts entry and sets the connection note `whitelistclient`.

What a match does (qpsmtpd's whitelist, which is Gavin Carr's whitelist_soft):
  host    connection note `whitelisthost`; the connect hook answers OK, so the
          connect plugins listed after this one are skipped. Policy plugins
          (helo, earlytalker, badmailfrom, dnsbl, greylisting ...) skip the
          whole connection through is_immune().
  helo    connection note `whitelisthelo`; later helo/ehlo plugins are skipped
          for that command only. HELO proves nothing, so it does not make the
          client immune.
  sender  transaction note `whitelistsender`; later mail plugins are skipped and
          policy plugins skip the rest of the transaction (is_immune()).
  rcpt    the recipient is accepted at once (OK: later rcpt plugins, rcpt_ok
          included, are skipped), its address note `whitelistrcpt` is set and the
          transaction note `whitelistrcpt` counts such recipients (greylisting
          skips a message whose recipients are all whitelisted). List only your own addresses and domains
          here: an entry for a foreign domain would let anyone relay to it.
This plugin itself accepts a recipient only for a whitelistrcpt match.
Whitelisting never grants relaying: a whitelisted host or sender skips policy
checks, but rcpt_ok still answers `550 Relaying denied (#5.7.1)` for a recipient
outside our domains unless the client may relay (relay plugin, RELAYCLIENT,
AUTH). qpsmtpd HEAD's rcpt_ok let such clients relay, which turns a forged
whitelisted envelope sender into an open relay; qpsmtpd 0.94 did not.
Devin Carraway's older whitelist, which carried every match across all later
hooks, is not reproduced. Load `relay` before this plugin (its connect hook must
run) and the policy plugins after it.

Arguments:
  per_recipient 1   do every check at RCPT instead, with per-recipient lists from
                    a user_config plugin (the user_config hook, asked for the same
                    file names with the recipient) added to the global ones. A
                    match in the global lists sets the notes above. A match in a
                    recipient's own lists sets that recipient's address notes
                    (whitelisthost, whitelisthelo, whitelistsender) and makes the
                    transaction immune (note whitelistsender) only while that
                    recipient is checked, and at DATA only if every recipient is
                    whitelisted that way: Alice's friends cannot exempt mail to Bob.
                    Host, HELO and sender matches never accept a recipient here.
  merge 0           with per_recipient: a recipient's own list replaces the global
                    one instead of being added to it (default 1)

Hooks: connect, helo, ehlo, mail, rcpt (all on rcpt with per_recipient).
Examples:
  whitelist
  whitelist_soft per_recipient 1 merge 0
"""

import os
import re
from ipaddress import ip_network

from qpsmtpd_py.api import (
    DECLINED, LOGERROR, LOGINFO, OK, AddressList, Bool, ConfigLine, IPList, Keyword, Plugin,
    parse_ip,
)

_V4_PREFIX = re.compile(r"^\d{1,3}(?:\.\d{1,3}){0,3}\.?$")
_V6_PREFIX = re.compile(r"^[0-9a-f]{1,4}(?::[0-9a-f]{0,4})*:$", re.I)

FILES = {"host": "whitelisthosts", "helo": "whitelisthelo",
         "sender": "whitelistsenders", "rcpt": "whitelistrcpt"}


class Whitelist(Plugin):
    arguments = (
        Keyword("per_recipient", Bool(), False, "do every check at RCPT, adding each "
                "recipient's own lists (user_config hook)"),
        Keyword("merge", Bool(), True, "with per_recipient: 0 = a recipient's own list replaces "
                "the global one"),
    )

    def register(self, *args):
        self.per_recipient = self.args["per_recipient"]
        self.merge = self.args["merge"]
        if self.per_recipient:
            self.register_hook("rcpt", self.per_recipient_rcpt)
            self.register_hook("data", self.data_scope)
        else:
            self.register_hook("connect", self.check_host)
            self.register_hook("helo", self.check_helo)
            self.register_hook("ehlo", self.check_helo)
            self.register_hook("mail", self.check_sender)
            self.register_hook("rcpt", self.check_rcpt)

    # -- normal mode: one check per hook -------------------------------------------------
    def check_host(self, transaction):
        if self.host_whitelisted(self.global_list("host")):
            self.connection.notes["whitelisthost"] = 1
            return OK
        return DECLINED

    def check_helo(self, transaction, host, *rest):
        if match_name(host, self.config_list(FILES["helo"])):
            self.connection.notes["whitelisthelo"] = 1
            self.log(LOGINFO, f"pass, helo host {host} in whitelisthelo")
            return OK
        return DECLINED

    def check_sender(self, transaction, sender, params=None):
        if self.match_address(sender, self.global_list("sender")):
            transaction.notes["whitelistsender"] = 1
            self.log(LOGINFO, f"pass, envelope sender {sender.address} in whitelistsenders")
            return OK
        return DECLINED

    def check_rcpt(self, transaction, rcpt, params=None):
        return self.rcpt_result(transaction, rcpt, [self.global_list("rcpt")])

    def rcpt_result(self, transaction, rcpt, lists):
        if not any(self.match_address(rcpt, addresses) for addresses in lists):
            return DECLINED
        rcpt.notes["whitelistrcpt"] = 1
        transaction.notes["whitelistrcpt"] = transaction.notes.get("whitelistrcpt", 0) + 1
        self.log(LOGINFO, f"pass, recipient {rcpt.address} in whitelistrcpt")
        return OK

    def host_whitelisted(self, hosts):
        conn = self.connection
        if "WHITELISTCLIENT" in os.environ:
            conn.notes["whitelistclient"] = 1
            self.log(LOGINFO, f"pass, host {conn.remote_ip} is a whitelisted client (WHITELISTCLIENT)")
            return True
        if conn.remote_ip and conn.remote_ip in hosts:
            self.log(LOGINFO, f"pass, host {conn.remote_ip} is a whitelisted host")
            return True
        return False

    def match_address(self, address, addresses):
        """whitelistsenders/whitelistrcpt: user@host entries match the address,
        host and @host entries every address in the domain (case-insensitive)."""
        if address is None or address.is_null or not address.host:
            return False
        return addresses.match(address) is not None

    def global_list(self, kind):
        """The parsed config file of `kind`, parsed again only when it changes."""
        return self.parsed_config(FILES[kind], self.parser(kind))

    def parser(self, kind):
        return {"host": self.parse_hosts, "helo": list}.get(kind, self.parse_addresses)

    def parse_addresses(self, entries):
        """An AddressList of whitelistsenders/whitelistrcpt lines (a bare domain is @domain)."""
        lines = [ConfigLine(e if "@" in e else "@" + str(e).strip(),
                            getattr(e, "path", None), getattr(e, "lineno", 0)) for e in entries]
        return AddressList(lines, log=self.log, regex="never", name="whitelist")

    def parse_hosts(self, entries):
        """An IPList of the valid whitelisthosts entries; the others are logged."""
        hosts = IPList()
        for entry in entries:
            value = host_entry(entry)
            if value is None:
                self.log(LOGERROR, f"{getattr(entry, 'origin', 'user_config')}: "
                         f"whitelisthosts: '{entry}' is no IP, prefix or CIDR block; ignored")
            else:
                hosts.add(value)
        return hosts

    # -- per_recipient mode: everything at RCPT -----------------------------------------
    def per_recipient_rcpt(self, transaction, rcpt, params=None):
        conn = self.connection
        own, global_ = {}, {}
        for kind, name in FILES.items():
            lines = self.recipient_list(transaction, rcpt, name)
            own[kind] = self.parser(kind)(lines or [])
            replaced = lines is not None and not self.merge
            global_[kind] = self.parser(kind)([]) if replaced else self.global_list(kind)
        helo = conn.hello_host or ""
        sender = transaction.sender

        if self.host_whitelisted(global_["host"]):
            conn.notes["whitelisthost"] = 1
        if helo and match_name(helo, global_["helo"]):
            conn.notes["whitelisthelo"] = 1
            self.log(LOGINFO, f"pass, helo host {helo} in whitelisthelo")
        if self.match_address(sender, global_["sender"]):
            transaction.notes["whitelistsender"] = 1
            transaction.notes.pop("whitelist_scoped", None)
            self.log(LOGINFO, f"pass, envelope sender {sender.address} in whitelistsenders")

        personal = [kind for kind, hit in (
            ("host", conn.remote_ip and conn.remote_ip in own["host"]),
            ("helo", helo and match_name(helo, own["helo"])),
            ("sender", self.match_address(sender, own["sender"]))) if hit]
        for kind in personal:
            rcpt.notes["whitelist" + kind] = 1
        if personal:
            self.log(LOGINFO, f"pass, {' and '.join(personal)} whitelisted by {rcpt.address}")
        self.scope_personal(transaction, bool(personal))
        return self.rcpt_result(transaction, rcpt, [global_["rcpt"], own["rcpt"]])

    def scope_personal(self, transaction, whitelisted):
        """A recipient's own whitelist makes the transaction immune (note
        whitelistsender) only while that recipient is checked."""
        notes = transaction.notes
        if notes.get("whitelistsender") and not notes.get("whitelist_scoped"):
            return                              # a global match: immune anyway
        if whitelisted:
            notes["whitelistsender"] = notes["whitelist_scoped"] = 1
        else:
            notes.pop("whitelistsender", None)
            notes.pop("whitelist_scoped", None)

    def data_scope(self, transaction):
        """At DATA a recipient's own whitelist counts only if every recipient has one."""
        flags = [any(r.notes.get("whitelist" + kind) for kind in ("host", "helo", "sender"))
                 for r in transaction.recipients]
        self.scope_personal(transaction, bool(flags) and all(flags))
        return DECLINED

    def recipient_list(self, transaction, rcpt, name):
        """The recipient's own list from a user_config plugin, or None."""
        code, values, _ = self.app.hooks.run("user_config", transaction, rcpt, name)
        return list(values) if code == OK else None


def host_entry(entry):
    """A whitelisthosts line as an IPList entry (incomplete IPv4 prefixes get their
    trailing dot), or None when it is not an address, prefix or CIDR block."""
    words = str(entry).split()
    if not words:
        return None
    text = words[0]
    if "/" in text:
        try:
            ip_network(text, strict=False)
            return text
        except ValueError:
            return None
    if parse_ip(text) is not None:
        return text
    if _V4_PREFIX.match(text) and all(int(p) <= 255 for p in text.rstrip(".").split(".")):
        return text if text.endswith(".") else text + "."
    if _V6_PREFIX.match(text):
        return text.lower()
    return None


def match_name(name, entries):
    name = name.lower()
    return any(name == str(entry).strip().lower() for entry in entries)
