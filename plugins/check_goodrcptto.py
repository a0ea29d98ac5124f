"""check_goodrcptto - accept only the recipients listed in config/goodrcptto.

Like badrcptto, but a whitelist: every recipient that is not listed is refused

  550 Local policy rejects this mail

Useful where a full deliverability check is not possible (relays, bastion hosts).

Config file goodrcptto, one entry a line (anything after the first word is ignored):
  alice@example.com       that address
  @example.org            every address in that domain
  postmaster              that local part in any domain
  /^sales-\\d+@example\\.com$/   a regular expression (/re/ or a pattern with one of
                          / ^ $ * + ! % ? \\), searched in the lower-cased user@host
Case does not matter. Bad regular expressions are logged with file and line and
skipped (syntax shared with badrcptto: qpsmtpd_py/helpers/addrlist.py). With no (or an
empty) goodrcptto file the plugin accepts everything.

A listed recipient is DECLINED, not accepted: rcpt_ok still decides about
relaying. Relay clients are not checked; recipients without a host (<postmaster>)
neither.

Arguments:
  extn CHARS          also try the local part cut at an extension separator, so
                      with `extn -` alice-lists@example.com is good when
                      alice@example.com is; `extn -+` allows both user-ext and
                      user+ext (the longest listed form wins; a-b-c tries a-b-c, a-b, a)
  deny_note NAME[=N]  add N (default 1) to the connection note NAME for each refusal
                      (default note: _check_goodrcptto)
  limit N             when the note reaches N, the refusal closes the connection
                      (550 and disconnect)

Hooks: rcpt. Load it before rcpt_ok.
Example config/plugins line:  check_goodrcptto extn - deny_note bad_rcpts limit 10
"""

import re

from qpsmtpd_py.api import (
    DECLINED, DENY, DENY_DISCONNECT, LOGDEBUG, LOGINFO, LOGNOTICE, Int, Keyword, Plugin, Text,
    address_list, user_candidates,
)

REFUSED = "Local policy rejects this mail"


_DENY_NOTE = r"([-\w]+)(?:=(\d+(?:\.\d+)?))?"


class CheckGoodRcptTo(Plugin):
    arguments = (
        Keyword("extn", Text(), "", "extension separators: also try the local part cut at one"),
        Keyword("deny_note", Text(_DENY_NOTE, "NAME or NAME=NUMBER"), "_check_goodrcptto",
                "connection note that counts the refusals (NAME=N adds N)", metavar="NAME[=N]"),
        Keyword("limit", Int(min=0), None, "when the note reaches N, the refusal closes the "
                "connection"),
    )

    def register(self, *args):
        self.extn = self.args["extn"]
        match = re.fullmatch(_DENY_NOTE, self.args["deny_note"])
        self.note_name = match.group(1)
        self.note_step = float(match.group(2)) if match.group(2) else 1
        if self.note_step == int(self.note_step):
            self.note_step = int(self.note_step)
        self.limit = self.args["limit"]

    def hook_rcpt(self, transaction, rcpt, params=None):
        if self.connection.relay_client:
            self.log(LOGDEBUG, "skip, relay client")
            return DECLINED
        if not rcpt.user or not rcpt.host:
            return DECLINED
        good = address_list(self, "goodrcptto", bare_user=True)
        if not good:
            self.log(LOGDEBUG, "skip, no goodrcptto entries")
            return DECLINED
        for user in user_candidates(rcpt.user, self.extn):
            entry = good.match(user, rcpt.host)
            if entry is not None:
                self.log(LOGINFO, f"pass, {user}@{rcpt.host} matches {entry.token}")
                return DECLINED
        notes = self.connection.notes
        count = notes.get(self.note_name)
        count = (count if isinstance(count, (int, float)) else 0) + self.note_step
        notes[self.note_name] = count
        self.log(LOGINFO, f"fail, recipient {rcpt.address} denied ({self.note_name}={count})")
        if self.limit is not None and count >= self.limit:
            self.log(LOGNOTICE, "too many bad recipients, disconnecting client")
            return DENY_DISCONNECT, REFUSED
        return DENY, REFUSED
