"""virus/bitdefender - scan multipart messages with BitDefender's command-line
scanner (bdc).

Multipart messages up to max_size KB are written to a temporary file (removed
afterwards) and checked with `BITDEFENDER_LOCATION --mail --all --arc FILE` (an
argument list, never a shell). A line `... infected: NAME` in its output is a virus.

Arguments (keyword/value pairs):
  bitdefender_location PATH   the bdc program; default /opt/bdc/bdc
  deny_viruses yes|no    refuse infected mail (default yes); no: deliver it with
                         `X-Virus-Found: Yes` and `X-Virus-Details: NAME`
  max_size KB            larger messages are not scanned; default 128
  timeout SECONDS        the most one scan may take; default 60
  failure tempfail|accept  when bdc fails (an exit code above 1 with no infection
                         reported), crashes or times out: temp-fail (default) or deliver
                         with `X-Scan-Failed: virus/bitdefender: REASON`
Replies: `552 Virus Found: NAME`.

Hooks: data_post.
Example:
  virus/bitdefender bitdefender_location /opt/bdc/bdc max_size 1024

Differences from qpsmtpd: qpsmtpd ran bdc through a shell, without a time-out, and
took any failure for a clean scan; with deny_viruses no it added nothing (its
manual promised headers): here it adds X-Virus-Found/X-Virus-Details.
"""

import re

from qpsmtpd_py.api import (
    DECLINED, LOGERROR, LOGINFO, LOGWARN, Bool, Int, Keyword, Path, Plugin, ProgramError,
    ScanProgram, is_multipart, scan_arguments, scan_failed, virus_found,
)

INFECTED = re.compile(r"infected: (.+)$", re.M)


class BitDefender(Plugin):
    arguments = (
        Keyword("bitdefender_location", Path(), "/opt/bdc/bdc", "the bdc program"),
        Keyword("deny_viruses", Bool(), True, "refuse infected mail"),
        Keyword("max_size", Int(min=1), 128, "largest message scanned, in KB"),
        *scan_arguments(60.0, what="bdc"),
    )

    def register(self, *args):
        self.scanner = ScanProgram.from_arguments(self.args, "bitdefender_location", "bdc")

    def hook_data_post(self, transaction):
        size, limit = transaction.data_size, self.args["max_size"] * 1024
        if size > limit:
            self.log(LOGWARN, f"skip, mail too large to scan ({size} vs {limit})")
            return DECLINED
        if not is_multipart(transaction.header):
            self.log(LOGERROR, "skip, non-multipart mail")
            return DECLINED
        try:
            result = self.scanner.scan_message(transaction, ["--mail", "--all", "--arc"],
                                               self.keepalive)
        except (ProgramError, OSError) as exc:
            return scan_failed(self, transaction, self.scanner, exc)
        found = INFECTED.search(result.output)
        if found:
            name = found.group(1).strip()
            self.log(LOGINFO, f"fail, virus(es) found: {name}")
            return virus_found(transaction, name, self.args["deny_viruses"])
        if result.status > 1:
            return scan_failed(self, transaction, self.scanner, self.scanner.exit_error(result))
        self.log(LOGINFO, "pass, clean")
        return DECLINED
