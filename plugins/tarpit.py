"""tarpit - slow the SMTP conversation down for clients that keep making errors.

Dictionary attacks and broken spam robots collect one refusal after another. Once
a client has had `after` errors in a connection, this plugin waits before it lets
each further command be answered; the wait doubles with every further error. A
legitimate client that makes one mistake is not slowed down; a robot trying 500
recipients spends minutes instead of seconds.

What counts as an error: every refusal by a plugin (DENY, DENYSOFT and their
_DISCONNECT forms, seen through the deny hook: unknown recipients, relaying
denied, policy refusals ...) and every unrecognized command.

What is delayed: the replies to HELO, EHLO, MAIL, RCPT, DATA, VRFY, NOOP, HELP and
unrecognized commands, from the command after the `after`-th error on. The
tarpit runs before every other plugin of these hooks, wherever it is listed.
QUIT and RSET are never delayed. Relay clients and whitelisted hosts or senders
(is_immune) are never delayed.

Arguments (key/value pairs; seconds may have fractions; `qpsmtpd-doc tarpit` lists them):
  after N        the tarpit starts after the N-th error (default 1, at least 1)
  delay S        the first delay (default 1)
  max_delay S    the delay doubles per further error up to this (default 16)
  max_total S    the most one connection is ever held in the tarpit (default 60);
                 never more than half the session time-out (config `timeout`), so a
                 worker is not held past it. After that commands are answered at once.

Delay for a command = min(delay * 2^(errors - after), max_delay), while the total
stays within max_total. With the defaults: errors 1, 2, 3, 4, 5 ... give 1, 2, 4,
8, 16, 16 ... seconds before each following reply. The worker sleeps (one
connection per process), so keep max_total well below the time-out and combine
the tarpit with count_unrecognized_commands or a connection limit.

Notes: connection notes `tarpit_errors` (count) and `tarpit_total` (seconds slept).
Hooks: deny, helo, ehlo, mail, rcpt, data, vrfy, noop, help, unrecognized_command.
Example:  tarpit after 2 delay 2 max_delay 20 max_total 120
"""

from qpsmtpd_py.api import DECLINED, LOGDEBUG, LOGINFO, Int, Keyword, Number, Plugin

DELAYED_HOOKS = ("helo", "ehlo", "mail", "rcpt", "data", "vrfy", "noop", "help")


class Tarpit(Plugin):
    arguments = (
        Keyword("after", Int(min=1), 1, "the tarpit starts after the N-th error"),
        Keyword("delay", Number(min=0, unit="seconds"), 1.0, "the first delay"),
        Keyword("max_delay", Number(min=0, unit="seconds"), 16.0,
                "the delay doubles per further error up to this"),
        Keyword("max_total", Number(min=0, unit="seconds"), 60.0,
                "the most one connection is held in the tarpit (at most half the time-out)"),
    )

    def register(self, *args):
        self.after = self.args["after"]
        self.delay = self.args["delay"]
        self.max_delay = self.args["max_delay"]
        self.max_total = self.args["max_total"]
        for hook in DELAYED_HOOKS:
            self.register_hook(hook, self.slow_down, unshift=True)
        self.register_hook("unrecognized_command", self.unrecognized, unshift=True)

    def hook_deny(self, transaction, plugin_name, code, message=""):
        self.count_error(f"refused by {plugin_name}")
        return DECLINED

    def unrecognized(self, transaction, verb, rest=""):
        self.slow_down(transaction)
        self.count_error("unrecognized command")
        return DECLINED

    def count_error(self, what):
        notes = self.connection.notes
        notes["tarpit_errors"] = notes.get("tarpit_errors", 0) + 1
        self.log(LOGDEBUG, f"error {notes['tarpit_errors']}: {what}")

    def slow_down(self, transaction, *args):
        seconds = self.next_delay()
        if seconds > 0:
            notes = self.connection.notes
            notes["tarpit_total"] = notes.get("tarpit_total", 0.0) + seconds
            self.log(LOGINFO, f"tarpit, {notes['tarpit_errors']} errors: waiting {seconds:.1f}s")
            self.app.clock.sleep(seconds)
        return DECLINED

    def next_delay(self):
        """Seconds to wait before answering the current command."""
        notes = self.connection.notes
        errors = notes.get("tarpit_errors", 0)
        if errors < self.after or self.is_immune():
            return 0.0
        budget = min(self.max_total, self.app.timeout / 2) - notes.get("tarpit_total", 0.0)
        step = min(errors - self.after, 32)
        return max(0.0, min(self.delay * 2 ** step, self.max_delay, budget))
