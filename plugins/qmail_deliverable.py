"""qmail_deliverable - refuse recipients that qmail could not deliver, asking a
qmail-deliverabled daemon (Qmail::Deliverable) over HTTP.

For each recipient the plugin sends `GET /qd1/deliverable?<address>` (the address
lower-cased and URI-escaped) to the daemon, which answers 200 with the status as
a number (decimal, as Perl prints it; 0x.. hex is accepted too):

  0x00         not deliverable    -> 550 Sorry, no mailbox here by that name. qd (#5.1.1)
  0x14         ezmlm list         -> with the null sender: 550 fail, mailing lists do
                                     not accept null senders; else accepted
  0x11 0x12 0x13                  permission failure, |command, bouncesaying program:
                                  not known, accepted
  0x21 0x22    temporarily undeliverable (group-writable / sticky home): accepted,
               qmail will defer the delivery itself
  0xf1-0xf6    deliverable (normal, vpopmail dir/alias/catch-all/vuser/qmail-ext)
  0xfe 0xff    vpopmail without domain / not a local address: not decided
"Accepted" and "not decided" mean DECLINED: the next rcpt plugin (rcpt_ok) decides.

When the daemon cannot be asked (refused connection, timeout, HTTP error, a
non-numeric answer) the client status is 0x2f and, as in the Perl plugin,
deliverability is assumed (DECLINED, logged as an error). With `on_error defer`
the recipient gets `450 Temporary failure checking the recipient, try again later`
instead. An address the daemon could not take (characters outside RFC 2822 atext)
is not checked.

Arguments (key/value):
  server HOST:PORT              the daemon (default 127.0.0.1:8998)
  server smtproutes:[HOST:]PORT ask the host that config/smtproutes routes the
                                recipient's domain to (`domain:host[:port]`, `.domain`
                                matches sub-domains, `:host` is the default route),
                                on PORT; domains without a route use HOST, or are
                                not checked when no HOST is given
  vpopmail_ext 0|1              vpopmail with qmail-ext: when user-ext@domain is not
                                deliverable, ask again for user@domain (default 0)
  on_error accept|defer         see above (default accept)
  timeout SECONDS               HTTP time-out (default 5)
  reject 0|1|naughty            0: only log undeliverable recipients; naughty: leave
                                the refusal to the naughty plugin (default 1)
Relay clients and whitelisted hosts/senders are not checked (is_immune). A refused
recipient costs one karma point.

Hooks: rcpt. Load it before rcpt_ok. Also loadable as check_qmail_deliverable.
Example config/plugins line:  qmail_deliverable server 127.0.0.1:8998 vpopmail_ext 1
"""

import http.client
import re
import urllib.parse

from qpsmtpd_py.api import (
    DECLINED, DENY, DENYSOFT, LOGDEBUG, LOGERROR, LOGINFO, LOGWARN, REJECT, Bool, Checked,
    Choice, Keyword, Number, Plugin,
)

CLIENT_FAILURE = 0x2f
UNDELIVERABLE = "Sorry, no mailbox here by that name. qd (#5.1.1)"
NO_NULL_SENDER = "fail, mailing lists do not accept null senders"
TEMPFAIL = "Temporary failure checking the recipient, try again later"
STATUS_TEXT = {
    0x11: "error, permission failure",
    0x12: "pass, qmail-command in dot-qmail",
    0x13: "pass, bouncesaying with program",
    0x14: "pass, ezmlm list",
    0x21: "pass, temporarily undeliverable: group/world writable",
    0x22: "pass, temporarily undeliverable: sticky home directory",
    0x2f: "error, daemon not reachable",
    0xf1: "pass, normal delivery",
    0xf2: "pass, vpopmail dir",
    0xf3: "pass, vpopmail alias",
    0xf4: "pass, vpopmail catchall",
    0xf5: "pass, vpopmail vuser",
    0xf6: "pass, vpopmail qmail-ext",
    0xfe: "error, SHOULD NOT HAPPEN",
    0xff: "skip, address not local",
}
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_VALID = re.compile(rf"(?!.*@.*@)({_ATEXT}+(?:[@.]{_ATEXT}+)*)\.?")
_HOST_PORT = re.compile(r"([A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\]):(\d+)")


def parse_server(text):
    """'HOST:PORT' -> ('host', (host, port)); 'smtproutes:[HOST:]PORT' ->
    ('smtproutes', (fallback host or None, port))."""
    if text.lower().startswith("smtproutes:"):
        match = re.fullmatch(r"smtproutes:(?:(.*?):)?(\d+)", text, re.I)
        if not match:
            raise ValueError("is not smtproutes:[HOST:]PORT")
        return "smtproutes", (match.group(1) or None, int(match.group(2)))
    match = _HOST_PORT.fullmatch(text)
    if not match:
        raise ValueError("is not HOST:PORT")
    return "host", (match.group(1).strip("[]"), int(match.group(2)))


class QmailDeliverable(Plugin):
    arguments = (
        Keyword("server", Checked(parse_server, "HOST:PORT or smtproutes:[HOST:]PORT",
                                  "HOST:PORT"), "127.0.0.1:8998",
                "the qmail-deliverabled daemon, or ask the host smtproutes names"),
        Keyword("vpopmail_ext", Bool(), False, "when user-ext@domain is not deliverable, "
                "ask again for user@domain"),
        Keyword("on_error", Choice("accept", "defer"), "accept",
                "what to do when the daemon cannot be asked"),
        Keyword("timeout", Number(min=0, unit="seconds"), 5.0, "HTTP time-out"),
        REJECT,
    )

    def register(self, *args):
        kind, (host, port) = self.args["server"]
        self.smtproutes = kind == "smtproutes"
        if self.smtproutes:
            self.fallback, self.port = host, port
        else:
            self.server = (host, port)
        self.vpopmail_ext = self.args["vpopmail_ext"]
        self.on_error = self.args["on_error"]
        self.timeout = self.args["timeout"]

    # -- where to ask ------------------------------------------------------------------
    def server_for(self, domain):
        """(host, port) of the daemon for this recipient domain, or None."""
        if not self.smtproutes:
            return self.server
        host = smtproute(self.config_list("smtproutes"), domain)
        if host:
            return host, self.port
        if self.fallback:
            return self.fallback, self.port
        return None

    # -- the HTTP client (Qmail::Deliverable::Client) ------------------------------------
    def deliverable(self, server, address):
        """The daemon's status for the address: an int, None for 'no answer' (204),
        or CLIENT_FAILURE when the daemon could not be asked."""
        host, port = server
        path = "/qd1/deliverable?" + urllib.parse.quote(address, safe="")
        conn = http.client.HTTPConnection(host, port, timeout=self.timeout)
        try:
            conn.request("GET", path, headers={"Connection": "close"})
            response = conn.getresponse()
            body = response.read(64).decode("ascii", "replace").strip()
        except (OSError, http.client.HTTPException) as exc:
            self.log(LOGERROR, f"error, qmail-deliverabled {host}:{port} unreachable or broken ({exc})")
            return CLIENT_FAILURE
        finally:
            conn.close()
        if response.status == 204:
            return None
        if response.status != 200:
            self.log(LOGERROR, f"error, qmail-deliverabled {host}:{port} answered "
                     f"{response.status} {response.reason}")
            return CLIENT_FAILURE
        try:
            return int(body, 16) if body.lower().startswith("0x") else int(body)
        except ValueError:
            self.log(LOGERROR, f"error, qmail-deliverabled {host}:{port} sent {body[:20]!r}")
            return CLIENT_FAILURE

    # -- the check ---------------------------------------------------------------------------
    def hook_rcpt(self, transaction, rcpt, params=None):
        if self.is_immune() or not rcpt.user or not rcpt.host:
            return DECLINED
        match = _VALID.fullmatch(rcpt.address.lower())
        if not match:
            self.log(LOGWARN, f"skip, cannot check invalid address {rcpt.address!r}")
            return DECLINED
        address = match.group(1)
        server = self.server_for(rcpt.host.lower())
        if server is None:
            self.log(LOGINFO, f"skip, no smtproute for {rcpt.host}")
            return DECLINED
        self.log(LOGDEBUG, f"checking deliverability of {address} at {server[0]}:{server[1]}")
        status = self.deliverable(server, address)
        if status == 0 and self.vpopmail_ext and "-" in address.split("@")[0]:
            user, _at, domain = address.partition("@")
            status = self.deliverable(server, f"{user.split('-')[0]}@{domain}")
        return self.decide(transaction, address, status)

    def decide(self, transaction, address, status):
        if status is None:
            self.log(LOGWARN, f"error (unknown) checking '{address}'")
            return DECLINED
        if status == CLIENT_FAILURE and self.on_error == "defer":
            self.log(LOGINFO, f"fail, deferring {address}: daemon not reachable")
            return DENYSOFT, TEMPFAIL
        if status == 0x14 and transaction.sender is not None and transaction.sender.is_null:
            self.log(LOGINFO, f"fail, {address} is a mailing list and the sender is null")
            return DENY, NO_NULL_SENDER
        if status:
            self.log(LOGINFO, STATUS_TEXT.get(status, f"error, unknown: 0x{status:02x}") + f" ({address})")
            return DECLINED
        self.adjust_karma(-1)
        return self.get_reject(UNDELIVERABLE, f"{address} is not deliverable")


def smtproute(lines, domain):
    """The relay host qmail's smtproutes gives for a domain ('' or None: none)."""
    routes = {}
    for line in lines:
        match = re.match(r"^(.*?):\[?([^\]:\s]*)", line)
        if match:
            routes.setdefault(match.group(1).lower(), match.group(2))
    if domain in routes:
        return routes[domain]
    labels = domain.split(".")
    for i in range(1, len(labels)):
        wildcard = "." + ".".join(labels[i:])
        if wildcard in routes:
            return routes[wildcard]
    return routes.get("")
