"""virus/hbedv - scan each message with H+BEDV's AntiVir (antivir).

The message is written to a temporary file (removed afterwards) and checked with
`HBEDVSCANNER --archive-max-recursion=50 --alltypes -z -noboot -nombr -rs FILE`
(an argument list, never a shell). Virus names come from its `ALERT: [NAME virus]`
lines; exit code 1 or 3 means something was found, 0 clean, anything else (200 out
of memory, 211 self check failed, 214 no license key ...) is a scanner failure.

Config file `hbedv_deny`: one virus name pattern (a regular expression, matched
whole, case-blind) per line; when it has lines, only viruses matching one are
refused, the others delivered with the header fields below.

Arguments:
  hbedvscanner PATH      the antivir program; default /usr/bin/antivir
  timeout SECONDS        the most one scan may take; default 60
  failure tempfail|accept  on a scanner failure, crash or time-out: temp-fail (default)
                         or deliver with `X-Scan-Failed: virus/hbedv: REASON`
Header fields (on top): `X-H+BEDV-Virus-Checked: Checked`; with a virus also
`X-H+BEDV-Virus-Found: Yes` and `X-H+BEDV-Virus-Details: NAMES` (60 characters).
Replies: `552 Virus found: NAMES`.

Hooks: data_post.
Example:
  virus/hbedv hbedvscanner /usr/lib/AntiVir/antivir

Differences from qpsmtpd: a shell command line, no time-out, and every scanner error
taken for a clean scan in qpsmtpd; here errors follow the failure policy. A bad
hbedvscanner is a start-up error (qpsmtpd exited the process).
"""

import re

from qpsmtpd_py.api import (
    DECLINED, DENY, LOGERROR, LOGINFO, LOGWARN, Keyword, Path, Plugin, ProgramError, ScanProgram,
    scan_arguments, scan_failed,
)

ALERT = re.compile(r"^ALERT: \[([^\]]+?)\s+(\w+)?\]", re.M)
OPTIONS = ["--archive-max-recursion=50", "--alltypes", "-z", "-noboot", "-nombr", "-rs"]


def patterns(lines):
    compiled = []
    for line in lines:
        try:
            compiled.append(re.compile(line.strip(), re.IGNORECASE))
        except re.error:
            pass
    return compiled


class HBEDV(Plugin):
    arguments = (
        Keyword("hbedvscanner", Path(r"/[\w./-]*", "an absolute path of letters, digits, / . _ -"),
                "/usr/bin/antivir", "the antivir program"),
        *scan_arguments(60.0, what="antivir"),
    )

    def register(self, *args):
        self.scanner = ScanProgram.from_arguments(self.args, "hbedvscanner", "antivir")

    def hook_data_post(self, transaction):
        try:
            result = self.scanner.scan_message(transaction, OPTIONS, self.keepalive)
        except (ProgramError, OSError) as exc:
            return scan_failed(self, transaction, self.scanner, exc)
        if result.status not in (0, 1, 3):
            return scan_failed(self, transaction, self.scanner, self.scanner.exit_error(result))
        header = transaction.header
        viruses = list(dict.fromkeys(m.group(1) for m in ALERT.finditer(result.output)))
        found = ", ".join(viruses)[:60]
        if result.status:
            self.log(LOGWARN, f"fail, virus(es) found: {found}")
            header.add("X-H+BEDV-Virus-Found", "Yes", prepend=True)
            header.add("X-H+BEDV-Virus-Details", found, prepend=True)
        header.add("X-H+BEDV-Virus-Checked", "Checked", prepend=True)
        if not result.status:
            self.log(LOGINFO, "pass, clean")
            return DECLINED
        deny = self.parsed_config("hbedv_deny", patterns)
        if viruses and (not deny or any(p.fullmatch(v) for p in deny for v in viruses)):
            return DENY, f"Virus found: {found}"
        self.log(LOGERROR if not viruses else LOGINFO, "virus not in hbedv_deny: delivered")
        return DECLINED
