"""earlytalker - refuse clients that talk before the SMTP greeting.

A real mail server waits for the 220 greeting before it says HELO, and waits for
"354 go ahead" before it sends the message. Spam robots often pipeline the whole
conversation at once. At connect this plugin holds the greeting back for `wait`
seconds (default 1) and watches, without reading, whether the client sends
anything; with `check-at DATA` it does the same before answering DATA with 354.

Arguments (key/value pairs, as in qpsmtpd):
  wait N              seconds to wait for early input (default 1; fractions allowed,
                      at most 300). The connection note `earlytalker_wait`, set by an
                      earlier plugin (a reputation database, say), overrides it for
                      one connection.
  reject 0|1|naughty  refuse early talkers (default 1); 0 only logs and sets the note,
                      naughty leaves the refusal to the naughty plugin
  reject_type perm|temp|disconnect|temp_disconnect
                      default perm; with defer-reject 1, temp (qpsmtpd's
                      documented default)
  defer-reject 0|1    1: greet the client normally and refuse its MAIL commands
                      instead (450 by default, 550 with reject_type perm or
                      action deny), so the refusal is logged with the envelope
  check-at CONNECT|DATA
                      when to check; may be given twice to check at both.
                      Default: CONNECT only
  action deny|denysoft|log
                      the old (0.84 and Debian) form: deny = reject 1 reject_type perm,
                      denysoft = reject 1 reject_type temp, log = reject 0.
                      `reject`/`reject_type` win when both are given.
  loglevel            as for every plugin

Replies (qpsmtpd's text; the engine adds enhanced status codes after EHLO):
  at connect:  550 Connecting host started transmitting before SMTP greeting
               (450 with reject_type temp), then the connection is closed
  at DATA:     554 (451) with the same text; the transaction is reset
  at MAIL (defer-reject):  450 (550 with reject_type perm) with the same text
Arguments come in pairs; an odd count, an unknown keyword (`acton log`), an
unknown check-at stage or a bad wait stops the server at start-up, naming
config/plugins and the line (qpsmtpd silently disabled the plugin instead).

Notes: connection note `earlytalker` is 1 once the client talked early; karma -1.
Skipped for relay clients and whitelisted hosts or senders (is_immune) and, at
connect, for clients whose connection note `karma_history` is above 5. List it
after relay/whitelist plugins so their notes are set in time. With defer-reject a
client that authenticates (becomes a relay client) before MAIL is let through.

Hooks: connect, data, mail (with defer-reject).
Examples:
  earlytalker
  earlytalker wait 2 reject_type temp check-at CONNECT check-at DATA
  check_earlytalker action log
"""

from qpsmtpd_py.api import (
    DECLINED, LOGDEBUG, LOGINFO, REJECT, REJECT_TYPE, Bool, Choice, Keyword, Number, Plugin,
)

MESSAGE = "Connecting host started transmitting before SMTP greeting"
STAGES = ("CONNECT", "DATA")
MAX_WAIT = 300.0


class Earlytalker(Plugin):
    arguments = (
        Keyword("wait", Number(min=0, max=MAX_WAIT, unit="seconds"), 1.0,
                "how long to wait for early input"),
        REJECT.but(default=None, help="1 refuses early talkers (default, unless action log), "
                   "0 only logs, naughty leaves it to the naughty plugin"),
        REJECT_TYPE.but(help="default perm; temp with action denysoft or with defer-reject"),
        Keyword("defer-reject", Bool(), False, "greet normally and refuse the client's MAIL "
                "commands instead"),
        Keyword("check-at", Choice(*STAGES), ["CONNECT"], "when to check; twice for both",
                repeat=True),
        Keyword("action", Choice("deny", "denysoft", "log"), None, "the old (0.84 and Debian) "
                "form of reject/reject_type"),
    )

    def register(self, *args):
        self.check_at = set(self.args["check-at"])
        self.wait = self.args["wait"]
        # the prefork front holds its greeting this long for the clients it greets
        # itself, and tells the session whether they spoke first
        self.greeting_delay = self.wait if "CONNECT" in self.check_at else 0
        action = self.args["action"] or ""
        if self.args["reject"] is None:
            self.args["reject"] = "0" if action == "log" else "1"
        self.defer = self.args["defer-reject"]
        if self.args["reject_type"] is None:
            # qpsmtpd: a deferred refusal is temporary unless asked otherwise
            temp = action == "denysoft" or (self.defer and action != "deny")
            self.args["reject_type"] = "temp" if temp else "perm"
        if self.defer:
            self.register_hook("mail", self.mail_handler)

    def wait_length(self):
        override = self.connection.notes.get("earlytalker_wait")
        if override:
            try:
                return parse_wait(override, "earlytalker_wait note")
            except ValueError as exc:
                self.log(LOGINFO, f"ignoring {exc}")
        return self.wait

    def talked_early(self):
        return self.qp.channel.input_pending(self.wait_length())

    def hook_connect(self, transaction):
        if "CONNECT" not in self.check_at or self.is_immune():
            return DECLINED
        karma = self.connection.notes.get("karma_history")
        if isinstance(karma, (int, float)) and not isinstance(karma, bool) and karma > 5:
            self.log(LOGINFO, f"skip, karma {karma}")
            return DECLINED
        if not self.talked_early():
            return self.log_and_pass()
        if not self.defer:
            return self.log_and_deny("before the greeting")
        self.connection.notes["earlytalker"] = 1
        self.adjust_karma(-1)
        self.log(LOGINFO, "fail, deferred: remote started talking before we said hello")
        return DECLINED

    def hook_data(self, transaction):
        if "DATA" not in self.check_at or self.is_immune():
            return DECLINED
        if not self.talked_early():
            return self.log_and_pass()
        return self.log_and_deny("before the 354 reply to DATA")

    def mail_handler(self, transaction, sender, params=None):
        if not self.connection.notes.get("earlytalker") or self.is_immune():
            return DECLINED
        return self.log_and_deny("before the greeting (deferred to MAIL)")

    def log_and_pass(self):
        self.log(LOGINFO, "pass, not spontaneous")
        return DECLINED

    def log_and_deny(self, when):
        self.connection.notes["earlytalker"] = 1
        self.adjust_karma(-1)
        self.log(LOGDEBUG, f"{self.connection.remote_ip} talked {when}")
        return self.get_reject(MESSAGE, f"remote started talking {when}")


def parse_wait(text, what):
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ValueError(f"{what} '{text}' is not a number of seconds")
    if not 0 <= value <= MAX_WAIT:
        raise ValueError(f"{what} {text}: must be between 0 and {MAX_WAIT:g} seconds")
    return value
