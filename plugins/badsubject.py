"""badsubject - refuse messages whose Subject is listed in config/badsubject.

Config file `badsubject`: one Subject per line, compared literally with the
message's Subject (folding and surrounding white space ignored, case kept), as
Steve Kemp's original plugin did: `ATTENTION FUND BENEFICIARY. DONATION CASH AID
AWARD`. A line written `/pattern/` (optionally `/pattern/i`) is a regular
expression searched in the Subject instead. A bad pattern is logged once and
skipped.

Reply: `552 Subject refused` (reject_type temp: 452).

Arguments:
  reject 0|1|naughty     default 1 (0: log only)
  reject_type perm|temp|disconnect|temp_disconnect   default perm
Hooks: data_post.
Example config/badsubject:
  ATTENTION FUND BENEFICIARY. DONATION CASH AID AWARD
  /^\\s*re: your (winning|prize)/i

Differences from the original: its reply text was never published; this plugin's
is above. The /pattern/ lines are an addition.
"""

import re

from qpsmtpd_py.api import DECLINED, LOGERROR, LOGINFO, REJECT, REJECT_TYPE, Plugin, fold_header


class BadSubject(Plugin):
    arguments = (REJECT, REJECT_TYPE.but(default="perm"))

    def compile(self, lines):
        literal, patterns = set(), []
        for line in lines:
            text = line.strip()
            match = re.fullmatch(r"/(.*)/(i?)", text)
            if not match:
                literal.add(fold_header(text))
                continue
            try:
                patterns.append(re.compile(match.group(1), re.IGNORECASE if match.group(2) else 0))
            except re.error as exc:
                self.log(LOGERROR, f"{line.origin}: bad pattern '{text}' skipped: {exc}")
        return literal, patterns

    def hook_data_post(self, transaction):
        literal, patterns = self.parsed_config("badsubject", self.compile)
        subject = fold_header(transaction.header.get("Subject") if transaction.header else "")
        if subject in literal or any(p.search(subject) for p in patterns):
            return self.get_reject("Subject refused", f"bad subject '{subject[:80]}'")
        self.log(LOGINFO, "pass")
        return DECLINED
