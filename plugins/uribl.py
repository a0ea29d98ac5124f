"""uribl - look up the web addresses in a message in URI block lists (SURBL, URIBL ...).

Spam advertises web sites; their domains and addresses are listed in URI block
lists, queried like DNSBLs: `example.com.multi.surbl.org`. After DATA this plugin
finds the host names and IP addresses in every text part of the message
(text/plain, text/html ... also inside attached messages), decoded from
quoted-printable or base64 and their charset, and looks them up in every zone of
config/uribl_zones, all at once.

What counts as a host:
  * in a URL (scheme://[user@]host..., e.g. http://a.b.example.com/x): the host, with
    any top-level domain; an IP address (dotted, each part decimal, octal 0177 or
    hex 0x7f, or one number: http://2130706433/) is looked up reversed (4.3.2.1.zone)
  * outside URLs: names starting with www., and names under the classic top-level
    domains (com net org info biz ... and the two-letter country codes), as qpsmtpd
Escapes spammers use are undone first: %2e-style URL escapes and &#46; entities.
Each name is looked up with its parent domains down to the registered domain (two
labels; three under the two-level country domains co.uk, com.au ...):
a.b.example.com -> a.b.example.com, b.example.com, example.com.

Config files:
  uribl_zones   one zone a line:  zone [mask[,mask...]] [action]
                  mask    which answers count (composite lists such as multi.surbl.org
                          answer 127.0.0.N with one bit per list): an answer counts
                          when (its last three bytes AND the OR of the masks) is not
                          0; default (or a negative mask) 0x00ffffff, every list
                  action  add-header|deny|denysoft|log for this zone (default: the
                          `action` argument)
                e.g.  multi.surbl.org 2,8 deny
                      black.uribl.com 2 add-header
                A bad mask or action is logged with file:line and the line skipped.
  uribl_whitelist_domains   domains never looked up (a listed domain covers its
                subdomains), one a line

Arguments:
  action add-header|deny|denysoft|log   default add-header
  timeout N              seconds for the lookups, at most dns_timeout (the default;
                         qpsmtpd's default 30 is capped)
  check-headers 0|1      also scan the header fields (also written scan-headers)
  checkip yes|no         look up IP addresses in URLs (default yes; some lists answer
                         positive for every address)
  max_hosts N            names and addresses looked up per message (default 40;
                         the rest are logged and skipped)
  max_bytes N            bytes of the message read (default 1000000): a huge message
                         costs bounded work

Results, per listed name (first the zone's action decides):
  add-header   X-URIBL-Match: <name> in <zone>: <TXT of the listing, or its address>
  deny         552 <name> in <zone>: <text>
  denysoft     452 <name> in <zone>: <text>
  log          logged only
A listing is an A record in 127.0.0.0/8 that passes the mask (127.0.0.1 and
127.255.255.x, which list operators use for "query refused", are logged, not
counted); the TXT record is asked only for listed names, for the text. A lookup
that fails or times out counts as not listed (logged): a DNS outage never refuses
a message.

Skipped: relay clients and whitelisted hosts or senders (is_immune).
Hooks: data_post.
Example: uribl action deny, with config/uribl_zones:  multi.surbl.org 2,4,8,64

Differences from qpsmtpd: MIME parts are decoded (qpsmtpd scanned raw lines, so
base64 text went unseen and only quoted-printable soft breaks were joined); URLs
under new top-level domains are found; the work per message is bounded
(max_hosts, max_bytes); a bad uribl_zones line skips that line (qpsmtpd disabled
the plugin); A records are asked first and TXT only for listed names.
"""

import email
import email.policy
import html
import ipaddress
import re
import urllib.parse

from qpsmtpd_py.api import (
    DECLINED, DENY, DENYSOFT, DNSFailure, LOGDEBUG, LOGERROR, LOGINFO, LOGWARN, Bool, Choice,
    Int, Keyword, Number, Plugin, dnslist, reverse_ip,
)

ACTIONS = ("add-header", "deny", "denysoft", "log")
DEFAULT_MASK = 0x00FFFFFF
TWO_LEVEL_CCTLDS = frozenset(
    "ac ae uk ai ar at au az bb bh bm br bs ca ck cn co cr cu cy do et ge hk id il jp kr "
    "kw lv sg za".split())
CLASSIC_TLDS = (r"aero|arpa|asia|biz|cat|com|coop|edu|gov|info|int|jobs|mil|mobi|museum|"
                r"name|net|org|pro|tel|travel|[a-z]{2}")
_NUMBER = r"(?:0[xX][0-9a-fA-F]+|\d+)"
_URL_PREFIX = r"\b[a-zA-Z][a-zA-Z0-9+.-]{2,15}:/+(?:[^\s/@]+@)?"
_URL_INT_IP = re.compile(_URL_PREFIX + r"(\d{7,10})(?=[:/?#\s\"'<>]|$)")
_URL_DOTTED_IP = re.compile(_URL_PREFIX + rf"({_NUMBER}\.{_NUMBER}\.{_NUMBER}\.{_NUMBER})(?![\w.])")
_URL_HOST = re.compile(_URL_PREFIX + r"((?:[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,62})\.)+[a-zA-Z]{2,63})\b\.?")
_BARE_HOST = re.compile(
    r"(?<![\w@.-])((?:www\.(?:[a-zA-Z0-9][a-zA-Z0-9-]{0,62}\.)+[a-zA-Z]{2,63})|"
    rf"(?:(?:[a-zA-Z0-9][a-zA-Z0-9-]{{0,62}}\.)+(?:{CLASSIC_TLDS})))(?![\w-])", re.I)
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")


# -- finding hosts in text ------------------------------------------------------------------
def _octet(text):
    if text.lower().startswith("0x"):
        return int(text, 16)
    if len(text) > 1 and text.startswith("0") and all(c in "01234567" for c in text):
        return int(text, 8)
    return int(text)


def hosts_in(text):
    """(names, ips) found in one piece of text, in order of appearance."""
    text = _PERCENT.sub(lambda m: chr(int(m.group(1), 16)), text)
    text = html.unescape(text) if "&#" in text else text
    names, ips = [], []
    for match in _URL_INT_IP.finditer(text):
        number = int(match.group(1))
        if number < 2 ** 32:
            ips.append(str(ipaddress.IPv4Address(number)))
    for match in _URL_DOTTED_IP.finditer(text):
        try:
            octets = [_octet(part) for part in match.group(1).split(".")]
        except ValueError:
            continue
        if all(0 <= o <= 255 for o in octets):
            ips.append(".".join(map(str, octets)))
    for match in _URL_HOST.finditer(text):
        names.append(match.group(1).lower())
    for match in _BARE_HOST.finditer(text):
        names.append(match.group(1).lower())
    return list(dict.fromkeys(names)), ips


def lookup_names(host):
    """host and its parent domains down to the registered domain."""
    labels = host.lower().rstrip(".").split(".")
    cutoff = 3 if labels[-1] in TWO_LEVEL_CCTLDS else 2
    return [".".join(labels[i:]) for i in range(0, len(labels) - cutoff + 1)]


def message_texts(raw, scan_headers=False):
    """The decoded text of every text/* part of a message (bytes), and the header
    field values when scan_headers: an iterator of str."""
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    if scan_headers:
        yield "\n".join(f"{name}: {value}" for name, value in message.items())
    for part in message.walk():
        if part.is_multipart() or part.get_content_maintype() != "text":
            continue
        payload = part.get_payload(decode=True) or b""
        charset = part.get_content_charset() or "utf-8"
        try:
            yield payload.decode(charset, "replace")
        except LookupError:                   # an unknown charset name
            yield payload.decode("latin-1")


# -- the plugin -------------------------------------------------------------------------------
class Uribl(Plugin):
    arguments = (
        Keyword("action", Choice(*ACTIONS), "add-header", "what a listed name does by default"),
        Keyword("timeout", Number(min=0.1, unit="seconds"), None,
                "seconds for the lookups (at most dns_timeout, the default)"),
        Keyword("check-headers", Bool(), False, "also scan the header fields",
                aliases=("scan-headers",)),
        Keyword("checkip", Bool(), True, "look up IP addresses found in URLs"),
        Keyword("max_hosts", Int(min=1), 40, "names and addresses looked up per message"),
        Keyword("max_bytes", Int(min=1000), 1000000, "bytes of the message read"),
    )

    def parse_zones(self, lines):
        """[(zone, mask, action)]; bad lines logged and skipped."""
        zones = []
        for line in lines:
            words = line.split()
            zone = words[0].lower().rstrip(".")
            if not dnslist.valid_zone(zone):
                self.log(LOGERROR, f"{line.origin}: '{zone}' is not a zone name; line skipped")
                continue
            mask = 0
            try:
                for word in (words[1].split(",") if len(words) > 1 else ["-1"]):
                    value = int(word, 16) if word.lower().lstrip("-").startswith("0x") else int(word)
                    mask |= value if value >= 0 else DEFAULT_MASK
            except ValueError:
                self.log(LOGERROR, f"{line.origin}: malformed mask '{words[1]}'; line skipped")
                continue
            action = words[2].lower() if len(words) > 2 else self.args["action"]
            if action not in ACTIONS:
                self.log(LOGERROR, f"{line.origin}: unknown action '{words[2]}'; line skipped")
                continue
            zones.append((zone, mask & DEFAULT_MASK or DEFAULT_MASK, action))
        return zones

    @staticmethod
    def parse_whitelist(lines):
        return frozenset(line.split()[0].lower().rstrip(".") for line in lines if line.split())

    def whitelisted(self, name, whitelist):
        labels = name.split(".")
        return any(".".join(labels[i:]) in whitelist for i in range(len(labels)))

    # -- data_post -----------------------------------------------------------------------
    def hook_data_post(self, transaction):
        if self.is_immune():
            return DECLINED
        zones = self.parsed_config("uribl_zones", self.parse_zones)
        if not zones:
            return DECLINED
        targets = self.targets(transaction)
        if not targets:
            self.log(LOGINFO, "pass, no URIs found")
            return DECLINED
        matches = self.lookup(targets, zones)
        for description, action in matches:
            self.log(LOGWARN, description)
            if action == "add-header":
                transaction.header.add("X-URIBL-Match", description)
            elif action == "deny":
                return DENY, description
            elif action == "denysoft":
                return DENYSOFT, description
        if not matches:
            self.log(LOGINFO, f"pass, {len(targets)} names and addresses not listed")
        return DECLINED

    def targets(self, transaction):
        """The names to ask each zone for (reversed IPs, hosts and parents), bounded."""
        whitelist = self.parsed_config("uribl_whitelist_domains", self.parse_whitelist)
        limit = self.args["max_bytes"]
        header = transaction.header.as_bytes() + b"\n" if transaction.header is not None else b""
        raw = header + transaction.body_bytes(max(0, limit - len(header)))
        seen, targets = set(), []
        for text in message_texts(raw, self.args["check-headers"]):
            self.keepalive()
            names, ips = hosts_in(text)
            candidates = [reverse_ip(ip) for ip in ips] if self.args["checkip"] else []
            for host in names:
                if self.whitelisted(host, whitelist):
                    self.log(LOGDEBUG, f"skip, whitelisted URI domain {host}")
                    continue
                candidates += lookup_names(host)
            for name in candidates:
                if name in seen:
                    continue
                seen.add(name)
                if len(targets) >= self.args["max_hosts"]:
                    self.log(LOGINFO, f"skip, more than {self.args['max_hosts']} names: {name} ...")
                    return targets
                targets.append(name)
        return targets

    def lookup(self, targets, zones):
        """[(description, action)] of the listed names: A for all at once, then TXT for
        the listed ones."""
        timeout = dnslist.lookup_timeout(self, self.args["timeout"])
        pending = {(name, zone): self.resolver.submit(f"{name}.{zone}", "A", timeout)
                   for name in targets for zone, _m, _a in zones}
        answers = dnslist.collect(pending)
        listed = []
        errors = 0
        for zone, mask, action in zones:
            for name in targets:
                result = answers[(name, zone)]
                if isinstance(result, DNSFailure):
                    errors += 1
                    continue
                hits = [a for a in result if self.counts(a, mask, name, zone)]
                if hits:
                    listed.append((name, zone, action, hits[0]))
        if errors:
            self.log(LOGERROR, f"error, {errors} lookups failed; not counted as listed")
        texts = dnslist.collect({(name, zone): self.resolver.submit(f"{name}.{zone}", "TXT", timeout)
                                 for name, zone, _a, _h in listed})
        out = []
        for name, zone, action, address in listed:
            txt = texts[(name, zone)]
            text = dnslist.reply_text(" ".join(txt)) if not isinstance(txt, DNSFailure) else ""
            out.append((f"{name} in {zone}: {text or address}", action))
        return out

    def counts(self, address, mask, name, zone):
        verdict, _detail = dnslist.classify([address])
        value = int(ipaddress.ip_address(address)) if verdict == "listed" else 0
        if verdict != "listed" or value & 0xFFFFFF == 1:
            self.log(LOGERROR, f"error, {name}.{zone} answered {address}: not a listing")
            return False
        return bool(value & mask)
