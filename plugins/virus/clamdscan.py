"""virus/clamdscan - scan each message with ClamAV's clamd (INSTREAM) and refuse or
mark infected mail.

The message (header and body) is streamed to clamd with its INSTREAM command over a
unix socket or TCP, in chunks: a big message is never held in memory. clamd's
`ScanMail yes` decodes MIME, so a virus in a base64 attachment is found too.

Arguments (keyword/value pairs, as qpsmtpd's):
  clamd_socket PATH      clamd's unix socket; default /var/run/clamav/clamd.ctl
  clamd_host HOST        clamd's address for TCP; default localhost
  clamd_port PORT        use TCP (clamd_host:clamd_port) instead of the socket
  deny_viruses yes|no    refuse infected mail (default yes); no: deliver it with
                         `X-Virus-Found: Yes` and `X-Virus-Details: NAME`
  max_size KB            larger messages are not scanned; default 1024 (also the
                         most that is ever sent to clamd)
  scan_all 1|0           scan every message (default 1); 0: multipart mail only
  defer_on_error 1|0     qpsmtpd's switch for the failure policy: 1 = failure
                         tempfail, 0 = failure accept (given explicitly, it is the
                         admin's choice to let mail through unscanned)
  timeout SECONDS        the most one scan may take, connect to answer; default 30
  failure tempfail|accept  when clamd cannot be reached, fails, dies mid-scan or times
                         out: temp-fail (default) or deliver unscanned with
                         `X-Scan-Failed: virus/clamdscan: REASON`
Messages from a connection already marked naughty are not scanned (qpsmtpd's rule).

Header fields (added on top): clean mail gets `X-Virus-Found: No` and
`X-Virus-Checked: by ClamAV <version> on <me>`.
Replies: `552 Virus found: <name>`; failure tempfail: `452 Unable to scan for viruses`.
A virus also marks the connection naughty (note `naughty`) and costs 1 karma.

Hooks: data_post.
Examples:
  virus/clamdscan clamd_socket /run/clamav/clamd.ctl
  virus/clamdscan clamd_host 10.0.0.5 clamd_port 3310 max_size 10240 timeout 60

Differences from qpsmtpd: qpsmtpd accepted mail unscanned whenever clamd failed
unless defer_on_error was set, and had no time-out (a stuck clamd held the
session for ever). Here a failure temp-fails by default and a scan never takes
longer than `timeout`; `defer_on_error 0` or `failure accept` keep the old way.
qpsmtpd passed clamd a spool file path unless clamd_port was set; this plugin
always streams (no spool-directory permissions to arrange).
"""

import struct
import time

from qpsmtpd_py.api import (
    DECLINED, DENY, LOGDEBUG, LOGINFO, LOGNOTICE, Bool, Int, Keyword, Path, Plugin, Scanner,
    ScannerError, Text, is_multipart, scan_arguments, scan_failed,
)

VERSION_TTL = 600                      # seconds a clamd version string is reused


class ClamdScan(Plugin):
    arguments = (
        Keyword("clamd_socket", Path(), "/var/run/clamav/clamd.ctl", "clamd's unix socket"),
        Keyword("clamd_host", Text(), "localhost", "clamd's host for TCP"),
        Keyword("clamd_port", Int(min=1, max=65535), None, "clamd's TCP port (then TCP is used)"),
        Keyword("deny_viruses", Bool(), True, "refuse infected mail (no: add headers)"),
        Keyword("max_size", Int(min=1), 1024, "largest message scanned, in KB"),
        Keyword("scan_all", Bool(), True, "scan every message (0: multipart only)"),
        Keyword("defer_on_error", Bool(), None, "qpsmtpd's switch: 1 = failure tempfail, "
                "0 = failure accept"),
        *scan_arguments(30.0, what="clamd"),
    )

    def register(self, *args):
        failure = self.args["failure"]
        defer = self.args["defer_on_error"]
        if defer is not None:
            if "failure" in self.args.given and failure != ("tempfail" if defer else "accept"):
                raise ValueError("defer_on_error and failure disagree; give one of them")
            failure = "tempfail" if defer else "accept"
        if self.args["clamd_port"]:
            host = self.args["clamd_host"]
            address = f"[{host}]:{self.args['clamd_port']}" if ":" in host else \
                f"{host}:{self.args['clamd_port']}"
        else:
            address = self.args["clamd_socket"]
        self.max_bytes = self.args["max_size"] * 1024
        self.clamd = Scanner(address, timeout=self.args["timeout"], max_bytes=self.max_bytes,
                             failure=failure, name="clamd")
        self._version = (None, 0.0)

    def hook_data_post(self, transaction):
        if self.connection.notes.get("naughty"):
            self.log(LOGINFO, "skip, naughty")
            return DECLINED
        size = transaction.data_size
        if size > self.max_bytes:
            self.log(LOGINFO, f"skip, too big ({size})")
            return DECLINED
        if not self.args["scan_all"] and not is_multipart(transaction.header):
            self.log(LOGNOTICE, "skip, not multipart")
            return DECLINED
        try:
            version = self.version()
            reply = self.clamd.exchange(lambda conn: self.instream(conn, transaction))
        except ScannerError as exc:
            return scan_failed(self, transaction, self.clamd, exc, "Unable to scan for viruses")
        if reply.endswith(" FOUND"):
            return self.infected(transaction, reply[len("stream: "):-len(" FOUND")].strip())
        if not reply.endswith(" OK"):
            exc = ScannerError(f"{self.clamd}: {reply}")
            return scan_failed(self, transaction, self.clamd, exc, "Unable to scan for viruses")
        self.log(LOGINFO, "pass, clean")
        transaction.header.add("X-Virus-Found", "No", prepend=True)
        transaction.header.add("X-Virus-Checked", f"by {version} on {self.config('me')}",
                               prepend=True)
        return DECLINED

    def instream(self, conn, transaction):
        conn.send(b"zINSTREAM\0")
        conn.send_message(transaction, frame=self.frame)
        conn.send(b"\0\0\0\0")
        return conn.read_until(b"\0").rstrip(b"\0").decode("utf-8", "replace")

    def frame(self, chunk):
        self.keepalive()
        return struct.pack(">I", len(chunk)) + chunk

    def version(self):
        """'ClamAV 1.0.7' (clamd's VERSION up to the first /), asked every 10 minutes."""
        text, at = self._version
        if text is None or time.monotonic() - at > VERSION_TTL:
            reply = self.clamd.exchange(
                lambda conn: (conn.send(b"zVERSION\0"), conn.read_until(b"\0"))[1])
            text = reply.rstrip(b"\0").decode("utf-8", "replace").split("/")[0] or "ClamAV"
            self._version = (text, time.monotonic())
            self.log(LOGDEBUG, f"clamd is {text}")
        return text

    def infected(self, transaction, name):
        self.log(LOGNOTICE, f"fail, found virus {name}")
        conn = self.connection
        if not conn.notes.get("naughty"):
            conn.notes["naughty"] = f"Virus found: {name}"
        conn.notes["rejected"] = 1
        self.adjust_karma(-1)
        if self.args["deny_viruses"]:
            return DENY, f"Virus found: {name}"
        transaction.header.add("X-Virus-Found", "Yes", prepend=True)
        transaction.header.add("X-Virus-Details", name, prepend=True)
        return DECLINED
