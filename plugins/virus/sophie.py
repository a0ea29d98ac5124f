"""virus/sophie - scan multipart messages with the Sophie daemon (Sophos SAVI on a
unix socket).

Multipart messages up to max_size KB are written to a temporary file in the spool
directory (removed afterwards; readable by the daemon's group when the spool
directory is, as qpsmtpd arranged it) and Sophie is asked over its socket: the
file's path and a newline; it answers `0` (clean), `1:NAMES` (infected) or
`-1:REASON` (error).

Arguments (keyword/value pairs):
  sophie_socket PATH     Sophie's socket; default /var/run/sophie
  deny_viruses yes|no    refuse infected mail (default yes); no: deliver it with
                         `X-Virus-Found: Yes` and `X-Virus-Details: NAMES`
  max_size KB            larger messages are not scanned; default 128
  timeout SECONDS        the most one scan may take; default 30
  failure tempfail|accept  when Sophie cannot be reached, answers an error or nothing
                         in time: temp-fail (default) or deliver with
                         `X-Scan-Failed: virus/sophie: REASON`
Clean mail gets `X-Virus-Checked: Checked by SOPHIE on <me>` (appended).
Replies: `552 Virus Found: NAME`, `552 Viruses Found: NAME1,NAME2`.

Hooks: data_post.
Example:
  virus/sophie sophie_socket /var/run/sophie max_size 1024

Differences from qpsmtpd: qpsmtpd died when the socket could not be reached (the
session got a 451 for an internal error), waited for ever for an answer, and took an
error answer for a clean scan; here all three follow the failure policy.
"""

from qpsmtpd_py.api import (
    DECLINED, LOGERROR, LOGNOTICE, LOGWARN, Bool, Int, Keyword, Path, Plugin, Scanner,
    ScannerError, is_multipart, message_file, scan_arguments, scan_failed, virus_found,
)


class Sophie(Plugin):
    arguments = (
        Keyword("sophie_socket", Path(), "/var/run/sophie", "Sophie's unix socket"),
        Keyword("deny_viruses", Bool(), True, "refuse infected mail"),
        Keyword("max_size", Int(min=1), 128, "largest message scanned, in KB"),
        *scan_arguments(30.0, what="Sophie"),
    )

    def register(self, *args):
        path = self.args["sophie_socket"]
        self.sophie = Scanner(path if path.startswith("/") else "unix:" + path,
                              timeout=self.args["timeout"], failure=self.args["failure"],
                              name="sophie")

    def hook_data_post(self, transaction):
        size, limit = transaction.data_size, self.args["max_size"] * 1024
        if size > limit:
            self.log(LOGNOTICE, f"skip, too big ({size})")
            return DECLINED
        if not is_multipart(transaction.header):
            self.log(LOGWARN, "skip, non-multipart mail")
            return DECLINED
        try:
            with message_file(transaction) as path:
                reply = self.sophie.exchange(lambda conn: self.ask(conn, path))
        except ScannerError as exc:
            return scan_failed(self, transaction, self.sophie, exc)
        except OSError as exc:
            return scan_failed(self, transaction, self.sophie, ScannerError(f"temporary file: {exc}"))
        status, _, names = reply.partition(":")
        if status == "1":
            self.log(LOGERROR, f"fail, virus(es) found: {names}")
            return virus_found(transaction, names, self.args["deny_viruses"],
                               f"Virus{'es' if ',' in names else ''} Found")
        if status != "0":
            return scan_failed(self, transaction, self.sophie,
                               ScannerError(f"{self.sophie}: answered {reply!r}"))
        transaction.header.add("X-Virus-Checked", f"Checked by SOPHIE on {self.config('me')}")
        return DECLINED

    def ask(self, conn, path):
        conn.send(path.encode("utf-8", "surrogateescape") + b"\n")
        answer = bytearray()
        while len(answer) < 256:
            chunk = conn.recv(256 - len(answer))
            if not chunk:
                break
            answer += chunk
        return answer.decode("utf-8", "replace").strip()
