"""dnsbl - refuse clients whose IP address is listed in DNS block lists (DNSBLs).

At connect the client's address is looked up in every zone of config/dnsbl_zones,
all at once and while the other connect hooks run; the answers are collected when
a decision is due (the first RCPT, or at connect with `reject connect`) and kept
for the whole connection: a session with 1000 recipients asks each zone once and
waits at most once. IPv6 clients are looked up in the nibble form of RFC 5782
(2001:db8::2 -> 2.0.0.0...8.b.d.0.1.0.0.2.zone) in every zone; a zone that does
not list IPv6 just answers "no such name".

Config files:
  dnsbl_zones      one zone a line:
                     zone          the zone publishes TXT records: a TXT answer
                                   means listed, and its text is the reply
                     zone:message  the zone publishes only A records: an A answer in
                                   127.0.0.0/8 means listed, and the reply is
                                   `message` with %IP% replaced by the client's
                                   address (empty message: "Blocked by zone")
                   No file, or no lines: the plugin does nothing.
  dnsbl_allow      addresses never looked up: an IP (192.168.1.1), an octet prefix
                   (172.16.33. -- the trailing dot may be left out), a CIDR block
                   (10.0.0.0/8, 2001:db8::/32)
  dnsbl_rejectmsg  lines put in front of the list's text in every refusal (a
                   multi-line reply), e.g. where to complain

Environment (as DJB's rblsmtpd, and qpsmtpd under tcpserver rules):
  RBLSMTPD unset         the lists are asked
  RBLSMTPD=""            this client is not checked at all
  RBLSMTPD="text"        this client is refused with dnsbl_rejectmsg and "text"
                         (%IP% replaced; a leading "-", rblsmtpd's mark for a
                         permanent error, is dropped), like a listing; no lookups

Arguments:
  reject 1|0|naughty|connect   default 1:
      1        refuse every RCPT of a listed client with the list's text, except
               to postmaster, abuse, mailer-daemon and root, which stay
               reachable so a listed sender can still complain (RFC 5321 4.5.1)
      connect  refuse at once instead of greeting (550 and close); nobody is
               reachable, not even postmaster -- the cheapest choice
      naughty  leave the refusal to the naughty plugin (connection note
               `naughty`); the answers are collected at connect. A RCPT to one of
               the special accounts above clears the note, as in qpsmtpd
      0        only log (and karma -1)
  reject_type perm|temp|disconnect|temp_disconnect   default perm (550);
               disconnect closes the connection after the 550
  timeout N    seconds the lookups may take, at most dns_timeout (the default)
  a lone word  qpsmtpd's old form: `dnsbl disconnect` is `dnsbl reject_type disconnect`

Replies:
  550 <dnsbl_rejectmsg lines>
  550 <TXT of the list, one line: control characters removed, at most 300 chars>
  550 <message of a zone:message line, %IP% replaced>
  550 Blocked by <zone>          (an A listing without message, or an empty TXT)
  With reject connect the refusal is the greeting (550, then the connection closes).

A list answer is an A record in 127.0.0.0/8 (RFC 5782); 127.255.255.x (the error
codes of Spamhaus and others: "query refused", "typo") and addresses outside
127/8 (a resolver that makes answers up) are logged as errors, not listings. A
lookup that fails or times out counts as not listed (logged): a DNSBL outage
never refuses mail.

Skipped: relay clients and whitelisted hosts (is_immune: relay, whitelist,
dns_whitelist_soft -- list dns_whitelist_soft before dnsbl), dnsbl_allow, an
empty RBLSMTPD.

Notes: connection note `dnsbl` = the refusal text once a client is found listed
(also with reject 0). Karma -1 for a listed client.
Hooks: connect (lookups start, ahead of every other connect hook; the decision
with reject connect|naughty), rcpt.

Example config/dnsbl_zones:
  zen.spamhaus.org
  bl.example.net:Listed by bl.example.net, see http://bl.example.net/?ip=%IP%
and config/plugins:
  dnsbl reject_type disconnect

Differences from qpsmtpd 0.94: 0.94 refuses a listed client at connect with
`reject 1` (here that is `reject connect`; `reject 1` refuses at RCPT so that
postmaster stays reachable); the text of a `zone:message` line is used (0.94
replied with the DNS name); dnsbl_rejectmsg comes with every refusal, as its
manual says (0.94 used it only for RBLSMTPD); a non-empty RBLSMTPD refuses, as
the manual says (0.94 then did nothing unless `reject connect`); IPv6 clients
are looked up (0.94 made a broken name of them); a TXT record with line breaks
cannot inject reply lines.
"""

import os

from qpsmtpd_py.api import (
    DECLINED, LOGDEBUG, LOGERROR, LOGINFO, LOGWARN, REJECT_TYPE, Choice, DNSFailure,
    IPList, Keyword, Number, Plugin, Positional, dnslist, parse_ip,
)

REJECT_TYPES = ("perm", "temp", "disconnect", "temp_disconnect")
SPECIAL_ACCOUNTS = ("postmaster", "abuse", "mailer-daemon", "root")


class Dnsbl(Plugin):
    arguments = (
        Keyword("reject", Choice("1", "0", "naughty", "connect", aliases={
            "no": "0", "false": "0", "off": "0", "yes": "1", "true": "1", "on": "1"}), "1",
            "1 refuses at RCPT (postmaster stays reachable), connect refuses instead of "
            "greeting, naughty leaves it to the naughty plugin, 0 only logs"),
        REJECT_TYPE.but(default="perm"),
        Keyword("timeout", Number(min=0.1, unit="seconds"), None,
                "seconds the lookups may take (at most dns_timeout, the default)"),
        Positional("REJECT_TYPE", Choice(*REJECT_TYPES, aliases={"hard": "perm", "soft": "temp"}),
                   None, "qpsmtpd's old form: a lone reject_type word (dnsbl disconnect)"),
    )

    def register(self, *args):
        if self.args["REJECT_TYPE"] and "reject_type" not in self.args.given:
            self.args["reject_type"] = self.args["REJECT_TYPE"]
        self.reject = self.args["reject"]
        self.register_hook("connect", self.start_lookups, unshift=True)

    # -- config files ------------------------------------------------------------------
    def parse_zones(self, lines):
        """[(zone, message or None)] of dnsbl_zones; bad lines logged and skipped."""
        zones = []
        for line in lines:
            zone, colon, message = line.partition(":")
            zone = zone.strip().lower().rstrip(".")
            if not dnslist.valid_zone(zone):
                self.log(LOGERROR, f"{line.origin}: '{zone}' is not a zone name; line skipped")
                continue
            zones.append((zone, message.strip() if colon else None))
        return zones

    @staticmethod
    def parse_allow(lines):
        """dnsbl_allow as an IPList; '172.16.33' is the prefix '172.16.33.' (qpsmtpd)."""
        entries = []
        for line in lines:
            word = line.split()[0] if line.split() else ""
            if word and "/" not in word and ":" not in word and parse_ip(word) is None:
                word = word.rstrip(".") + "."
            entries.append(word)
        return IPList(entries)

    # -- connect: start every lookup ---------------------------------------------------
    def start_lookups(self, transaction):
        conn = self.connection
        rblsmtpd = os.environ.get("RBLSMTPD")
        if rblsmtpd is not None:
            conn.notes["dnsbl_env"] = rblsmtpd
            return DECLINED
        if conn.relay_client or conn.remote_ip in self.parsed_config("dnsbl_allow", self.parse_allow):
            return DECLINED
        zones = self.parsed_config("dnsbl_zones", self.parse_zones)
        if not zones:
            return DECLINED
        timeout = dnslist.lookup_timeout(self, self.args["timeout"])
        pending = {}
        for zone, message in zones:
            try:
                name = dnslist.client_name(conn.remote_ip, zone)
            except ValueError:
                self.log(LOGWARN, f"skip, client address '{conn.remote_ip}' is not an IP")
                return DECLINED
            pending[zone] = (message, self.resolver.submit(name, "TXT" if message is None else "A",
                                                           timeout))
        conn.notes["dnsbl_pending"] = pending
        return DECLINED

    def hook_connect(self, transaction):
        if self.reject not in ("connect", "naughty"):
            return DECLINED
        if self.is_immune():
            return DECLINED
        listing = self.listing()
        if listing is None:
            return DECLINED
        return self.refuse(listing)

    # -- rcpt: the decision ------------------------------------------------------------
    def hook_rcpt(self, transaction, rcpt, params=None):
        if rcpt.user and rcpt.user.lower() in SPECIAL_ACCOUNTS:
            if self.reject == "naughty" and self.is_naughty():
                self.is_naughty(0)          # as qpsmtpd: clears naughty and rejected
            self.log(LOGINFO, f"skip, {rcpt.user} stays reachable")
            return DECLINED
        if self.reject in ("connect", "naughty") or self.is_immune():
            return DECLINED
        listing = self.listing()
        if listing is None:
            return DECLINED
        return self.refuse(listing)

    def refuse(self, text):
        lines = [line.strip() for line in self.config_list("dnsbl_rejectmsg") if line.strip()]
        result = self.get_reject("\n".join(lines + [text]), text)
        return result

    # -- the answers, collected once per connection ------------------------------------
    def listing(self):
        """The refusal text for this client, or None; asked once per connection."""
        notes = self.connection.notes
        if "dnsbl_decided" in notes:
            return notes.get("dnsbl")
        notes["dnsbl_decided"] = True
        text = self.env_listing() if "dnsbl_env" in notes else self.collect_listing()
        if text is not None:
            notes["dnsbl"] = text
            self.adjust_karma(-1)
        return text

    def env_listing(self):
        value = self.connection.notes["dnsbl_env"]
        if value == "":
            self.log(LOGINFO, "skip, RBLSMTPD set but empty")
            return None
        text = dnslist.reply_text(value[1:] if value.startswith("-") else value)
        text = text.replace("%IP%", self.connection.remote_ip)
        self.log(LOGINFO, f"fail, RBLSMTPD: {text}")
        return text

    def collect_listing(self):
        pending = self.connection.notes.pop("dnsbl_pending", None)
        if not pending:
            return None
        answers = dnslist.collect({zone: p for zone, (_message, p) in pending.items()})
        found = None
        for zone, (message, _p) in pending.items():
            result = answers[zone]
            if isinstance(result, DNSFailure):
                self.log(LOGERROR, f"error, {zone}: {result}; not counted as listed")
                continue
            text = self.listed_text(zone, message, result)
            if text is not None and found is None:
                found = text
                self.log(LOGINFO, f"fail, listed in {zone}: {text}")
        if found is None:
            self.log(LOGINFO, "pass")
        return found

    def listed_text(self, zone, message, answers):
        """The reply for one zone's answers, or None when they are no listing."""
        if message is None:                        # a TXT zone
            if not answers:
                return None
            return dnslist.reply_text(" ".join(answers)) or f"Blocked by {zone}"
        verdict, detail = dnslist.classify(answers)
        if verdict == "error":
            self.log(LOGERROR, f"error, {zone}: {detail}")
            return None
        if verdict == "clean":
            return None
        self.log(LOGDEBUG, f"{zone} answered {', '.join(detail)}")
        text = dnslist.reply_text(message.replace("%IP%", self.connection.remote_ip))
        return text or f"Blocked by {zone}"
