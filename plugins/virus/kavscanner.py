"""virus/kavscanner - mark messages in which Kaspersky's kavscanner (4.x) finds a
virus; optionally copy them to a virus admin. It never refuses a message (qpsmtpd's
plugin had its refusals commented out).

The message is written to a temporary file (removed afterwards) and checked with
`KAVSCANNER_BIN -Y -P -B -MP -MD -* FILE` (an argument list, never a shell). Exit
codes 2, 3, 4 and 8 mean something was found; its `infected: NAME` and
`suspicion: NAME` lines are collected. 0 is clean; anything else is a scanner failure.

Arguments:
  kavscanner_bin PATH    the kavscanner program; default /opt/AVP/kavscanner
  bcc_virusadmin ADDR    add ADDR as a recipient of infected mail
  timeout SECONDS        the most one scan may take; default 60
  failure tempfail|accept  on a scanner failure, crash or time-out: temp-fail (default)
                         or deliver with `X-Scan-Failed: virus/kavscanner: REASON`
Header fields (appended): with a virus `X-Virus-Found: Yes` and `X-Virus-Details:
infected by: NAMES; suspicions: NAMES` (60 characters); always `X-Virus-Checked:
Checked by <me>`. Transaction notes `virus` (the details) and `virus_flag` (Yes).

Hooks: data_post.
Example:
  virus/kavscanner kavscanner_bin /opt/AVP/kavscanner bcc_virusadmin virusadmin@example.com

Differences from qpsmtpd: a shell command line, no time-out, and scanner errors taken
for clean scans there; here errors follow the failure policy.
"""

import re

from qpsmtpd_py.api import (
    DECLINED, LOGINFO, LOGWARN, Address, Checked, Keyword, Path, Plugin, ProgramError,
    ScanProgram, scan_arguments, scan_failed,
)

VIRUS_CODES = (2, 3, 4, 8)


def address(text):
    parsed = Address.parse(text)
    if parsed is None or parsed.is_null or not parsed.host:
        raise ValueError("expected a mail address")
    return parsed


class KavScanner(Plugin):
    arguments = (
        Keyword("kavscanner_bin", Path(r"/[\w./-]*", "an absolute path of letters, digits, / . _ -"),
                "/opt/AVP/kavscanner", "the kavscanner program"),
        Keyword("bcc_virusadmin", Checked(address, "a mail address", "ADDR"), None,
                "also send infected mail to this address"),
        *scan_arguments(60.0, what="kavscanner"),
    )

    def register(self, *args):
        self.scanner = ScanProgram.from_arguments(self.args, "kavscanner_bin", "kavscanner")

    def hook_data_post(self, transaction):
        try:
            result = self.scanner.scan_message(
                transaction, ["-Y", "-P", "-B", "-MP", "-MD", "-*"], self.keepalive)
        except (ProgramError, OSError) as exc:
            return scan_failed(self, transaction, self.scanner, exc)
        if result.status not in (0, *VIRUS_CODES):
            return scan_failed(self, transaction, self.scanner, self.scanner.exit_error(result))
        description = "clean"
        if result.status:
            infected = re.findall(r"^.* infected: (.*)$", result.output, re.M)
            suspicious = re.findall(r"^\s*.* suspicion: (.*)$", result.output, re.M)
            description = (f"infected by: {', '.join(infected)}; "
                           f"suspicions: {', '.join(suspicious)}")[:60]
            self.log(LOGWARN, f"fail, there be a virus! ({description})")
            transaction.header.add("X-Virus-Found", "Yes")
            transaction.header.add("X-Virus-Details", description)
            transaction.notes["virus"] = description
            transaction.notes["virus_flag"] = "Yes"
            admin = self.args["bcc_virusadmin"]
            if admin is not None:
                transaction.add_recipient(Address.parse(admin.format()))
        self.log(LOGINFO, f"kavscanner results: {description}")
        transaction.header.add("X-Virus-Checked", f"Checked by {self.config('me')}")
        return DECLINED
