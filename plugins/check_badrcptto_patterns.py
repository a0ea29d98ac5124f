"""check_badrcptto_patterns - refuse recipients matching the regular expressions
in config/badrcptto_patterns (percent hacks, bang paths, double @ ...).

Config file badrcptto_patterns, one rule a line:  REGEX [response ...]
  REGEX is searched (not anchored: use ^ and $) in the lower-cased user@host,
  case-insensitively (a leading ! is a literal bang, as in qpsmtpd); !/REGEX/
  matches the recipients it does NOT match. The rest of the line is the reply:

    %.*@                  Sorry, no percent hacks here
    !/@example\\.com$/    we only take mail for example.com
    @.*@
  The first line answers `550 Sorry, no percent hacks here`; a rule without a
  response (the third) gives the core's `550 relaying denied`.
Bad regular expressions are logged with file and line and skipped.

Relay clients are not checked. Hooks: rcpt. Load it before rcpt_ok.
Example config/plugins line:  check_badrcptto_patterns
"""

from qpsmtpd_py.api import DECLINED, DENY, LOGINFO, Plugin, address_list


class CheckBadRcptToPatterns(Plugin):
    arguments = ()                # none but loglevel: anything else stops start-up

    def hook_rcpt(self, transaction, rcpt, params=None):
        if self.connection.relay_client:
            self.log(LOGINFO, "skip, relay client")
            return DECLINED
        entry = address_list(self, "badrcptto_patterns", regex="always").match(rcpt)
        if entry is None:
            return DECLINED
        self.log(LOGINFO, f"fail, {rcpt.address} matches {entry.token} ({entry.line.origin})")
        return (DENY, entry.text) if entry.text else DENY
