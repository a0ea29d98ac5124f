"""spambayes - classify messages with SpamBayes (its sb_filter.py) and mark them.

The message goes to `SB_FILTER` on its standard input (an argument list, never a
shell; a temporary file removed afterwards); SpamBayes writes it back with an
`X-Spambayes-Classification: spam|ham|unsure; SCORE` header field, which this
plugin copies into the message (replacing one that came with it) and into the
transaction note `spambayes` ({'classification': 'spam', 'score': '0.99'}). It never
refuses a message (filter on the header later, or let a later plugin read the note).
Relay clients, whitelisted hosts/senders and messages over size_limit are skipped.

Arguments:
  sb_filter PATH       SpamBayes' filter program; default /usr/bin/sb_filter.py
  size_limit BYTES     largest message classified; default 500000
  timeout SECONDS      the most one run may take; default 60
  failure tempfail|accept  when the filter fails, crashes or times out: temp-fail
                       (default) or deliver with `X-Scan-Failed: spambayes: REASON`
Hooks: data_post.
Example:
  spambayes sb_filter /usr/local/bin/sb_filter.py
"""

import re

from qpsmtpd_py.api import (
    DECLINED, LOGINFO, Int, Keyword, Path, Plugin, ProgramError, ScanProgram, message_file,
    scan_arguments, scan_failed,
)

FIELD = re.compile(r"^X-Spambayes-Classification:[ \t]*(.*(?:\n[ \t].*)*)", re.M | re.I)


class SpamBayes(Plugin):
    arguments = (
        Keyword("sb_filter", Path(), "/usr/bin/sb_filter.py", "SpamBayes' filter program"),
        Keyword("size_limit", Int(min=1), 500000, "largest message classified (bytes)"),
        *scan_arguments(60.0, what="sb_filter"),
    )

    def register(self, *args):
        self.filter = ScanProgram(self.args["sb_filter"], timeout=self.args["timeout"],
                                  failure=self.args["failure"], name="sb_filter")

    def hook_data_post(self, transaction):
        if self.is_immune():
            return DECLINED
        if transaction.data_size > self.args["size_limit"]:
            self.log(LOGINFO, f"skip, too big ({transaction.data_size})")
            return DECLINED
        try:
            with message_file(transaction) as path:
                result = self.filter.run([], keepalive=self.keepalive, stdin=path)
        except (ProgramError, OSError) as exc:
            return scan_failed(self, transaction, self.filter, exc)
        head = result.output.split("\n\n", 1)[0]
        found = FIELD.search(head)
        if result.status != 0 or not found:
            text = " ".join(result.output.split())[:200]
            return scan_failed(self, transaction, self.filter, ProgramError(
                f"{self.filter}: exit code {result.status}, no classification: {text}"))
        value = " ".join(found.group(1).split())
        classification, _, score = value.partition(";")
        transaction.notes["spambayes"] = {"classification": classification.strip(),
                                          "score": score.strip()}
        transaction.header.delete("X-Spambayes-Classification")
        transaction.header.add("X-Spambayes-Classification", value, prepend=True)
        self.log(LOGINFO, f"pass, {value}")
        return DECLINED
