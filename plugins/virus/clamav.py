"""virus/clamav - scan each message with ClamAV's command-line scanner (clamscan or
clamdscan) and mark or refuse infected mail.

The message is written to a temporary file (mbox form: a "From " line, header,
body) in tmp_dir or the spool directory, the scanner runs on it with an argument
list (never a shell), and the file is removed afterwards. Exit code 0 is clean, 1
a virus; anything else, a signal or the time-out is a scanner failure.

Arguments (qpsmtpd's `name=value` words; `name value` works too):
  [clamscan_path=]PATH   the scanner; a bare first word is the path (qpsmtpd's old
                         form). Default /usr/bin/clamscan. A clamdscan path runs
                         clamdscan (the work is done by clamd).
  clamd_conf=PATH        clamd's configuration, default /etc/clamd.conf: clamdscan
                         gets `--config-file=PATH`; clamscan (which has no such
                         option) gets `--database=DIR` from the file's
                         DatabaseDirectory line, if it has one
  database=DIR           clamscan's signature directory, overriding clamd_conf's
  action=add-header|reject   what to do with a virus: add `X-Virus-Found: Yes` and
                         `X-Virus-Details: NAMES` and deliver (default), or refuse
  max_size=BYTES         larger messages are not scanned; default 524288
  tmp_dir=DIR            where the temporary file goes; default the spool directory
  back_compat            add `-i --max-recursion=50` (ClamAV before 0.80)
  declined_on_fail       qpsmtpd's switch: on a scanner failure, deliver unscanned
                         (= failure=accept)
  timeout=SECONDS        the most one scan may take; default 60 (then the scanner's
                         whole process group is killed)
  failure=tempfail|accept  on a scanner failure: temp-fail (default) or deliver
                         unscanned with `X-Scan-Failed: virus/clamav: REASON`

Clean mail gets `X-Virus-Checked: Checked by ClamAV on <me>` (appended).
Replies: `552 Virus Found: NAMES` (action=reject); scanner failure: `452 Message
denied temporarily`.

Hooks: data_post.
Examples:
  virus/clamav clamscan_path=/usr/bin/clamscan action=reject
  virus/clamav /usr/bin/clamdscan clamd_conf=/etc/clamav/clamd.conf action=reject timeout=30

Differences from qpsmtpd: qpsmtpd built a shell command line and had no time-out;
here the scanner runs with an argument list and is killed at `timeout`. qpsmtpd
passed `--config-file` to clamscan too, which current clamscan refuses (exit 2:
every message temp-failed); clamscan gets `--database` instead. A killed scanner
temp-fails (qpsmtpd did the same unless declined_on_fail). The virus names are
joined with spaces, without qpsmtpd's trailing space.
"""

import os
import re
import time

from qpsmtpd_py.api import (
    DECLINED, LOGDEBUG, LOGINFO, LOGWARN, Choice, Flag, Int, Keyword, Path, Plugin,
    Positional, ProgramError, ScanProgram, message_file, scan_arguments, scan_failed, virus_found,
)

FOUND = re.compile(r"^.*: (.+) FOUND$", re.M)


def split_pairs(words):
    """qpsmtpd's `name=value` words -> `name value`."""
    out = []
    for word in words:
        name, eq, value = str(word).partition("=")
        out.extend([name, value] if eq and name else [word])
    return out


def database_directory(clamd_conf):
    """The DatabaseDirectory line of a clamd.conf, or None."""
    try:
        with open(clamd_conf, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                words = line.split(None, 1)
                if len(words) == 2 and words[0] == "DatabaseDirectory":
                    return words[1].strip()
    except OSError:
        return None
    return None


class ClamAV(Plugin):
    arguments = (
        Positional("clamscan_path", Path(r"/[\w./-]*", "an absolute path"), "/usr/bin/clamscan",
                   "the clamscan or clamdscan program", keyword=True),
        Keyword("clamd_conf", Path(), "/etc/clamd.conf", "clamd's configuration file"),
        Keyword("database", Path(), None, "clamscan's signature directory"),
        Keyword("action", Choice("add-header", "reject"), "add-header", "what to do with a virus"),
        Keyword("max_size", Int(min=1), 524288, "largest message scanned, in bytes"),
        Keyword("tmp_dir", Path(), None, "where the temporary message file goes"),
        Flag("back_compat", "add -i --max-recursion=50 (ClamAV before 0.80)"),
        Flag("declined_on_fail", "deliver unscanned when the scanner fails (failure=accept)"),
        *scan_arguments(60.0, what="the scanner"),
    )

    def __init__(self, app, plugin_name, args=()):
        super().__init__(app, plugin_name, split_pairs(args))

    def register(self, *args):
        failure = "accept" if self.args["declined_on_fail"] else self.args["failure"]
        path = self.args["clamscan_path"]
        self.scanner = ScanProgram.from_arguments(self.args, "clamscan_path",
                                                  os.path.basename(path), failure)
        options = ["--stdout"]
        if self.args["back_compat"]:
            options += ["-i", "--max-recursion=50"]
        if os.path.basename(path).startswith("clamdscan"):
            options.append(f"--config-file={self.args['clamd_conf']}")
        else:
            database = self.args["database"] or database_directory(self.args["clamd_conf"])
            if database:
                options.append(f"--database={database}")
        self.options = options + ["--no-summary"]
        tmp_dir = self.args["tmp_dir"]
        if tmp_dir and not os.path.isdir(tmp_dir):
            raise ValueError(f"tmp_dir {tmp_dir} does not exist")

    def hook_data_post(self, transaction):
        size = transaction.data_size
        if size > self.args["max_size"]:
            self.log(LOGWARN, f"skip, too large to scan ({size} vs {self.args['max_size']})")
            return DECLINED
        sender = transaction.sender.address if transaction.sender else ""
        mbox = f"From {sender or 'MAILER-DAEMON'} {time.asctime(time.gmtime())}\n".encode()
        try:
            with message_file(transaction, self.args["tmp_dir"], prefix=mbox) as path:
                self.log(LOGDEBUG, f"running {self.scanner.path} {' '.join(self.options)} {path}")
                result = self.scanner.run([*self.options, path], keepalive=self.keepalive)
        except ProgramError as exc:
            return scan_failed(self, transaction, self.scanner, exc, "Message denied temporarily")
        except OSError as exc:
            return scan_failed(self, transaction, self.scanner,
                               ProgramError(f"temporary file: {exc}"), "Message denied temporarily")
        if result.status == 1:
            names = " ".join(FOUND.findall(result.output)) or result.output.strip()[:200]
            self.log(LOGINFO, f"fail, virus(es) found: {names}")
            return virus_found(transaction, names, self.args["action"] == "reject")
        if result.status != 0:
            return scan_failed(self, transaction, self.scanner, self.scanner.exit_error(result),
                               "Message denied temporarily")
        self.log(LOGINFO, "pass, clean")
        transaction.header.add("X-Virus-Checked", f"Checked by ClamAV on {self.config('me')}")
        return DECLINED
