"""virus/aveclient - scan each message with Kaspersky Anti-Virus 5.x (aveclient
talking to the aveserver daemon).

The message is written to a temporary file (removed afterwards) and checked with
`AVCLIENT_BIN -p AVDAEMON_SOCK -s FILE` (an argument list, never a shell).
aveclient's exit code says what it found: 0 clean; 2, 3, 4, 6, 8 a virus or a
suspicious or damaged object (refused); 9 missing parameters and anything else is
a scanner error.

Arguments:
  avclient_bin PATH     the aveclient program; default /opt/kav/bin/aveclient
  avdaemon_sock PATH    aveserver's socket; default /var/run/aveserver
  blockonerror 0|1      1: on a scanner error refuse the message for good (qpsmtpd's
                        `552 Unable to scan for virus, please contact admin of <me>,
                        if you feel this is an error!`); default 0 (the failure policy)
  timeout SECONDS       the most one scan may take; default 60
  failure tempfail|accept  on a scanner error, crash or time-out: temp-fail (default)
                        or deliver with `X-Scan-Failed: virus/aveclient: REASON`

Clean mail gets `X-Virus-Checked: Checked by Kaspersky on <me>` (appended).
Replies: `552 Virus found: REPORT: <aveclient's report lines, comma-separated>`.

Hooks: data_post.
Example:
  virus/aveclient avclient_bin /opt/kav/bin/aveclient avdaemon_sock /var/run/aveserver

Differences from qpsmtpd: qpsmtpd ran aveclient through a shell with no time-out and,
on a scanner error without blockonerror (or a crash), delivered the message marked
"Checked"; here that is a temporary failure unless `failure accept` is set, and the
message is then tagged X-Scan-Failed, not X-Virus-Checked. A bad avclient_bin is a
start-up error (qpsmtpd exited the process).
"""

from qpsmtpd_py.api import (
    DECLINED, DENY, LOGINFO, LOGWARN, Bool, Keyword, Path, Plugin, ProgramError, ScanProgram,
    scan_arguments, scan_failed,
)

VIRUS_CODES = (2, 3, 4, 6, 8)
ABSOLUTE = Path(r"/[\w./-]*", "an absolute path of letters, digits, / . _ -")


class AveClient(Plugin):
    arguments = (
        Keyword("avclient_bin", ABSOLUTE, "/opt/kav/bin/aveclient", "the aveclient program"),
        Keyword("avdaemon_sock", Path(), "/var/run/aveserver", "aveserver's socket"),
        Keyword("blockonerror", Bool(), False, "refuse for good when the scanner fails"),
        *scan_arguments(60.0, what="aveclient"),
    )

    def register(self, *args):
        self.scanner = ScanProgram.from_arguments(self.args, "avclient_bin", "aveclient")

    def hook_data_post(self, transaction):
        try:
            result = self.scanner.scan_message(
                transaction, ["-p", self.args["avdaemon_sock"], "-s"], self.keepalive)
        except (ProgramError, OSError) as exc:
            return self.failed(transaction, exc)
        if result.status in VIRUS_CODES:
            report = "REPORT: " + ", ".join(result.lines[1:])
            self.log(LOGWARN, f"fail, virus found! ({report})")
            return DENY, f"Virus found: {report}"
        if result.status != 0:
            return self.failed(transaction, self.scanner.exit_error(result))
        self.log(LOGINFO, "pass, clean")
        transaction.header.add("X-Virus-Checked", f"Checked by Kaspersky on {self.config('me')}")
        return DECLINED

    def failed(self, transaction, exc):
        if self.args["blockonerror"]:
            self.log(LOGWARN, f"error, {exc}; refusing (blockonerror)")
            return DENY, (f"Unable to scan for virus, please contact admin of {self.config('me')}, "
                          "if you feel this is an error!")
        return scan_failed(self, transaction, self.scanner, exc)
