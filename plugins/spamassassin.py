"""spamassassin - score each message with SpamAssassin's spamd; add its X-Spam-*
header fields, refuse or mark spam.

At data_post the message goes to spamd (SPAMC/1.4 `HEADERS`, over TCP or a unix
socket) with an `X-Envelope-From: <sender>` field on top, as qpsmtpd sends it.
spamd answers with the header fields it would add; the X-Spam-* ones are added
to the message (X-Spam-Status, X-Spam-Flag, X-Spam-Level, X-Spam-Checker-Version,
...; X-Spam-Report and X-Spam-Prev-Subject are left out, as in qpsmtpd), and the
result is kept in the transaction note `spamassassin` for later plugins (dspam's
`reject agree`, naughty, karma), the X-Spam-Status words as a dict of strings:

  {'is_spam': 'Yes', 'score': '1003.3', 'required': '5.0', 'tests': 'GTUBE,...',
   'autolearn': 'no', 'autolearn_force': 'no', 'version': '4.0.1'}

Relay clients and whitelisted hosts/senders are not scanned; neither are messages
bigger than size_limit.

Arguments (keyword/value pairs, as qpsmtpd's):
  reject N|userprefs        refuse at a score of N or more; `userprefs` takes the
                            threshold spamd reports (`required`, per-user prefs with
                            spamd_user vpopmail). Default: never refuse. The old
                            spelling `reject_threshold N` works too.
  reject_type perm|temp|disconnect|temp_disconnect   default perm
  munge_subject_threshold N prefix the Subject when the score is above N (and above
                            spamd's required score)
  subject_prefix WORD       the prefix; else config file `subject_prefix` (first
                            line); else `*** SPAM ***`
  spamd_socket ADDR         /path/to/socket (any value with a /), host:port or
                            [v6]:port; default localhost:783
  spamd_user NAME           the user spamd scores for; default the user the server
                            runs as. `vpopmail`: the recipient's address when the
                            message has one recipient (per-user SA prefs); with
                            several recipients the user stays and `X-Spam-User:
                            NAME, N recipients` is added
  headers none              add no header fields (the note is still set, and the
                            subject is not munged)
  leave_old_headers drop|rename|keep   X-Spam-* fields already in the message (from
                            another server, not to be trusted): rename to X-Old-Spam-*
                            (default), drop, or keep
  relayclient skip          accepted for qpsmtpd's configs (relay clients are always
                            skipped)
  size_limit BYTES          largest message scanned; default 500000
  timeout SECONDS           the most one scan may take, connect to answer; default 60
  failure tempfail|accept   when spamd cannot be reached, fails or times out: temp-fail
                            the message (default; the sender retries) or accept it
                            unscanned with `X-Scan-Failed: spamassassin: REASON`

Replies: at or over the reject threshold, `552 spam score exceeded threshold`
(reject_type temp: 452). spamd failing: `452 Unable to scan the message, try again
later` (failure tempfail).
Karma: -1 for spam; SA autolearn=ham +1, autolearn=spam -1.

Hooks: data_post.
Example:
  spamassassin spamd_socket /run/spamd.sock reject 12 munge_subject_threshold 5

Differences from qpsmtpd: when spamd is down, times out, or dies mid-scan, qpsmtpd
logged and accepted the message unscanned (and could hang for ever on a stuck spamd);
here the message is temp-failed unless `failure accept` is set, and a scan never
takes longer than `timeout`. The added X-Spam-* fields keep spamd's order and
folding. A number given to `reject` below 1 is a threshold (as in qpsmtpd), not the
0|1 switch of other plugins.
"""

import os
import pwd
import re

from qpsmtpd_py.api import (
    DECLINED, LOGDEBUG, LOGERROR, LOGINFO, LOGNOTICE, REJECT_TYPE, Checked, Choice, Int,
    Keyword, Plugin, Scanner, ScannerError, Text, scan_arguments, scan_failed,
)

DEFAULT_PREFIX = "*** SPAM ***"
SKIPPED_FIELDS = ("x-spam-prev-subject", "x-spam-report")


def threshold(text):
    if text.lower() == "userprefs":
        return "userprefs"
    try:
        return float(text)
    except ValueError:
        raise ValueError("expected a score (a number) or userprefs") from None


def spamd_address(text):
    if "/" in text:
        return "unix:" + text if not text.startswith(("/", "unix:")) else text
    Scanner(text)                           # raises ValueError for a bad host:port
    return text


def parse_status(value):
    """X-Spam-Status text -> qpsmtpd's note: {'is_spam': 'Yes', 'score': '7.1', ...}."""
    words = value.split()
    if not words:
        return {}
    result = {"is_spam": words[0].rstrip(",")}
    for word in words[1:]:
        key, _, val = word.partition("=")
        result[key] = val
    if "hits" in result and "score" not in result:          # SpamAssassin 2.x
        result["score"] = result.pop("hits")
    return result


def current_user():
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


class SpamAssassin(Plugin):
    arguments = (
        Keyword("reject", Checked(threshold, "a score or userprefs", "N|userprefs"), None,
                "refuse messages scoring this much or more", aliases=("reject_threshold",)),
        REJECT_TYPE.but(default="perm"),
        Keyword("munge_subject_threshold", Checked(threshold, "a score", "N"), None,
                "prefix the Subject above this score"),
        Keyword("subject_prefix", Text(), None, "the Subject prefix (else config subject_prefix)"),
        Keyword("spamd_socket", Checked(spamd_address, "/path/to/socket or host:port", "ADDR"),
                "localhost:783", "where spamd listens"),
        Keyword("spamd_user", Text(), None, "the spamd user; vpopmail = the recipient"),
        Keyword("headers", Text(), None, "none: add no header fields"),
        Keyword("leave_old_headers", Choice("drop", "rename", "keep"), "rename",
                "what to do with X-Spam-* fields already in the message"),
        Keyword("relayclient", Choice("skip"), None, "qpsmtpd's spelling; relay clients are skipped"),
        Keyword("size_limit", Int(min=1), 500000, "largest message scanned (bytes)"),
        *scan_arguments(60.0, what="spamd"),
    )

    def register(self, *args):
        if self.args["munge_subject_threshold"] == "userprefs":
            raise ValueError("munge_subject_threshold takes a score, not userprefs")
        self.spamd = Scanner(self.args["spamd_socket"], timeout=self.args["timeout"],
                             failure=self.args["failure"], name="spamd")
        self.add_headers = str(self.args["headers"] or "").lower() != "none"

    def hook_data_post(self, transaction):
        if self.is_immune():
            return DECLINED
        size = transaction.data_size
        if size > self.args["size_limit"]:
            self.log(LOGINFO, f"skip, too large ({size})")
            return DECLINED
        username = self.spamd_username(transaction)
        try:
            fields = self.spamd.exchange(lambda conn: self.check(conn, transaction, username))
        except ScannerError as exc:
            return scan_failed(self, transaction, self.spamd, exc)
        if not fields:
            self.log(LOGERROR, "error, spamd answered without X-Spam-* fields")
            return DECLINED
        status = next((v for n, v in fields if n.lower() == "x-spam-status"), "")
        transaction.notes["spamassassin"] = parse_status(status)
        if self.add_headers:
            self.insert_headers(transaction, fields, username)
            self.munge_subject(transaction)
        return self.decide(transaction)

    def spamd_username(self, transaction):
        username = self.args["spamd_user"] or current_user()
        count = len(transaction.recipients)
        if count > 1:
            self.log(LOGDEBUG, f"message has {count} recipients")
            return username
        if username == "vpopmail" and count == 1:
            return transaction.recipients[0].address
        return username

    def check(self, conn, transaction, username):
        """One SPAMC exchange; returns spamd's X-Spam-* fields [(name, value)]."""
        envelope = f"X-Envelope-From: {transaction.sender.format() if transaction.sender else '<>'}\r\n"
        envelope = envelope.encode("utf-8", "surrogateescape")
        length = len(envelope) + self.spamd.message_size(transaction, crlf=True)
        conn.send(f"HEADERS SPAMC/1.4\r\nContent-length: {length}\r\nUser: {username}\r\n\r\n"
                  .encode("utf-8", "surrogateescape") + envelope)
        conn.send_message(transaction, crlf=True, frame=self.progress)
        conn.shutdown_write()
        status = conn.readline()
        if b"EX_OK" not in status:
            raise ScannerError(f"{self.spamd}: invalid response: "
                               f"{status.decode('utf-8', 'replace').strip()}")
        answer = conn.read_all()
        head, _, body = answer.partition(b"\r\n\r\n")      # spamd's own response header, then ours
        length = re.search(rb"(?im)^Content-length:\s*(\d+)", head)
        if length and len(body) < int(length.group(1)):
            raise ScannerError(f"{self.spamd}: answer cut short ({len(body)} of "
                               f"{int(length.group(1))} bytes)")
        return spam_fields(body.decode("utf-8", "replace").replace("\r\n", "\n"))

    def progress(self, chunk):
        self.keepalive()
        return chunk

    def cleanup(self, transaction, name):
        """X-Spam-* fields already in the message: rename to X-Old-*, drop or keep."""
        action = self.args["leave_old_headers"]
        if action == "keep":
            return
        old = transaction.header.get_all(name)
        if not old:
            return
        transaction.header.delete(name)
        if action == "rename":
            old_name = "X-Old-" + name[2:] if name.lower().startswith("x-") else "Old-" + name
            for value in old:
                transaction.header.add(old_name, value, prepend=True)

    def insert_headers(self, transaction, fields, username):
        self.cleanup(transaction, "X-Spam-User")
        new = []
        count = len(transaction.recipients)
        if count > 1:
            new.append(("X-Spam-User", f"{username}, {count} recipients"))
        for name, value in fields:
            if name.lower() in SKIPPED_FIELDS:
                continue
            self.cleanup(transaction, name)
            new.append((name, value))
        for name, value in reversed(new):
            transaction.header.add(name, value, prepend=True)

    def munge_subject(self, transaction):
        limit = self.args["munge_subject_threshold"]
        result = transaction.notes.get("spamassassin") or {}
        if limit is None:
            return
        score, required = _number(result.get("score")), _number(result.get("required"))
        if score is None or (required and score <= required) or score <= limit:
            return
        prefix = self.args["subject_prefix"] or self.config("subject_prefix") or DEFAULT_PREFIX
        subject = transaction.header.get("Subject") or ""
        transaction.header.replace("Subject", f"{prefix} {subject}")

    def decide(self, transaction):
        result = transaction.notes.get("spamassassin") or {}
        score = _number(result.get("score"))
        if score is None:
            self.log(LOGERROR, "error, no score from spamd")
            return DECLINED
        spam = result.get("is_spam") == "Yes"
        if spam:
            self.adjust_karma(-1)
        status = f"{'Spam' if spam else 'Ham'}, {result.get('score')}"
        learn = result.get("autolearn") or ""
        if learn == "ham":
            self.adjust_karma(1)
        elif learn == "spam":
            self.adjust_karma(-1)
        learn = f"learn={learn}" if learn else ""
        reject = self.args["reject"]
        if reject == "userprefs":
            reject = _number(result.get("required"))
        if not reject:                          # unset, 0 (as qpsmtpd) or no required score
            self.log(LOGNOTICE, f"pass, reject disabled ({status}, {learn})")
            return DECLINED
        if score < reject:
            verdict = "fail, tolerated" if spam else "pass"
            self.log(LOGINFO, f"{verdict}, {status} < {reject:g}, {learn}")
            return DECLINED
        self.log(LOGINFO, f"fail, {status}, > {reject:g}, {learn}")
        return self.get_reject_type(), "spam score exceeded threshold"


def spam_fields(header_text):
    """The X-Spam-* fields of a header block, with their folded lines (LF, as the
    engine keeps header values)."""
    fields, current = [], None
    for line in header_text.split("\n"):
        if not line:
            break
        if line[0] in " \t":
            if current is not None:
                current[1].append("\t" + line.strip())
            continue
        current = None
        match = re.match(r"(X-Spam-[^:\s]*):[ \t]*(.*)", line, re.IGNORECASE)
        if match:
            current = (match.group(1), [match.group(2)])
            fields.append(current)
    return [(name, "\n".join(lines)) for name, lines in fields]


def _number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None
