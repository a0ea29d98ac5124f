"""virus/uvscan - scan multipart messages with McAfee's command-line scanner (uvscan).

Multipart messages up to 250000 bytes are written to a temporary file (removed
afterwards) and checked with `UVSCAN_LOCATION --mime --unzip --secure --noboot FILE`
(an argument list, never a shell). A password-protected zip attachment (uvscan
says `password-protected`) is refused whatever else it found. Exit codes 2
(a DAT file failed its check), 6 (general problem), 8 (no DAT file) and 15 (self
check failed) are scanner failures; 0 is clean; any other code means a virus, named
by uvscan's `Found ...` line.

Arguments (keyword/value pairs):
  uvscan_location PATH   the uvscan program; default /usr/local/bin/uvscan
  deny_viruses yes|no    yes: refuse infected mail; no (qpsmtpd's default): deliver it
                         with `X-Virus-Found: Yes` and `X-Virus-Details: NAME`
  timeout SECONDS        the most one scan may take; default 60
  failure tempfail|accept  on a scanner failure, crash or time-out: temp-fail (default)
                         or deliver with `X-Scan-Failed: virus/uvscan: REASON`
Clean mail gets `X-Virus-Checked: Checked by McAfee uvscan on <me>` (appended).
Replies: `552 Virus Found: NAME`, `552 We do not accept password-protected zip files!`.

Hooks: data_post.
Example:
  virus/uvscan uvscan_location /usr/local/bin/uvscan deny_viruses yes

Differences from qpsmtpd: a shell command line, no time-out, and scanner failures
taken for clean scans there; here they follow the failure policy.
"""

import re

from qpsmtpd_py.api import (
    DECLINED, DENY, LOGERROR, LOGINFO, LOGWARN, Bool, Keyword, Path, Plugin, ProgramError,
    ScanProgram, is_multipart, scan_arguments, scan_failed, virus_found,
)

MAX_SIZE = 250_000
FAILURES = {2: "Integrity check for a DAT file failed", 6: "A general problem has occurred",
            8: "The program could not find a DAT file", 15: "The program self-check failed"}


class UVScan(Plugin):
    arguments = (
        Keyword("uvscan_location", Path(), "/usr/local/bin/uvscan", "the uvscan program"),
        Keyword("deny_viruses", Bool(), False, "refuse infected mail"),
        *scan_arguments(60.0, what="uvscan"),
    )

    def register(self, *args):
        self.scanner = ScanProgram.from_arguments(self.args, "uvscan_location", "uvscan")

    def hook_data_post(self, transaction):
        if transaction.data_size > MAX_SIZE:
            self.log(LOGINFO, f"skip, too big ({transaction.data_size})")
            return DECLINED
        if not is_multipart(transaction.header):
            self.log(LOGWARN, "skip, non-multipart mail")
            return DECLINED
        try:
            result = self.scanner.scan_message(
                transaction, ["--mime", "--unzip", "--secure", "--noboot"], self.keepalive)
        except (ProgramError, OSError) as exc:
            return scan_failed(self, transaction, self.scanner, exc)
        if "password-protected" in result.output:
            self.log(LOGINFO, "fail, password-protected zip file")
            return DENY, "We do not accept password-protected zip files!"
        if result.status in FAILURES:
            return scan_failed(self, transaction, self.scanner, ProgramError(
                f"{self.scanner}: exit code {result.status}: {FAILURES[result.status]}"))
        if result.status:
            found = re.search(r"\W+Found (.*)", result.output)
            virus = found.group(1).strip() if found else f"exit code {result.status}"
            self.log(LOGERROR, f"fail, virus found: {virus}")
            return virus_found(transaction, virus, self.args["deny_viruses"])
        self.log(LOGINFO, "pass, clean")
        transaction.header.add("X-Virus-Checked",
                               f"Checked by McAfee uvscan on {self.config('me')}")
        return DECLINED
