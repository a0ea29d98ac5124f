"""queue/qmail-queue - hand each message to qmail-queue (qmail, netqmail, notqmail,
s/qmail) or a program that speaks its protocol (qmail-qfilter, simscan, spamdyke's
wrappers, Postfix's or Exim's qmail-queue emulations).

The program gets the message (header with our Received line, then the body,
LF line ends) on file descriptor 0 and the envelope on descriptor 1:
`F<sender>\\0T<recipient>\\0T<recipient>\\0\\0`. Its exit code decides the reply:

  0       250 Queued! <time> qp <pid> <Message-Id>
  11-40   552 Unable to queue message (<code>)       permanent (qmail-queue(8))
  other   451 Unable to queue message (<code>)       temporary (DECLINED: a later
          queue plugin may still take the message)
The program gets 10 minutes; then it is killed and the client gets the 451.

Arguments:  [PATH]   the program, default $QMAIL/bin/qmail-queue (QMAIL defaults
                     to /var/qmail). PATH must be absolute and consist of letters,
                     digits and / - _ .
Environment: QMAILQUEUE, if set when the server starts, overrides PATH (as in
qmail-smtpd); the program inherits the server's environment.
Hooks: queue.  Examples:
  queue/qmail-queue
  queue/qmail-queue /var/qmail/bin/qmail-scanner-queue.pl
"""

import os
import re
import subprocess
import threading
import time

from qpsmtpd_py.api import (
    DECLINED, DENY, LOGERROR, LOGINFO, LOGNOTICE, LOGWARN, OK, Path, Plugin, Positional, Text,
)

_SAFE_PATH = re.compile(r"^/[/\w.-]*$")
TIMEOUT = 600


class QmailQueue(Plugin):
    arguments = (
        Positional("PATH", Path(), None, "the program, absolute, of letters, digits and / - _ . "
                   "(default $QMAIL/bin/qmail-queue; the environment's QMAILQUEUE wins)"),
        Positional("ignored", Text(), (), "further words are ignored with a warning, as in "
                   "qpsmtpd", many=True),
    )

    def register(self, *args):
        if self.args["ignored"]:
            self.log(LOGWARN, "WARNING: Ignoring additional arguments.")
        default = os.path.join(os.environ.get("QMAIL") or "/var/qmail", "bin", "qmail-queue")
        self.program = os.environ.get("QMAILQUEUE") or self.args["PATH"] or default
        if not _SAFE_PATH.match(self.program):
            raise ValueError(f"qmail-queue path '{self.program}' must be absolute and "
                             "hold only letters, digits and / - _ .")

    def hook_queue(self, transaction):
        self.log(LOGNOTICE, f"Queuing to {self.program}")
        try:
            code, pid = self.run(transaction)
        except OSError as exc:
            self.log(LOGERROR, f"error, cannot run {self.program}: {exc}")
            return DECLINED, "Unable to queue message (cannot start queue program)"
        if code != 0:
            self.log(LOGERROR, f"fail, {self.program} exited {code}")
            reply = f"Unable to queue message ({code})"
            return (DENY, reply) if 11 <= code <= 40 else (DECLINED, reply)
        msg_id = (transaction.header.get("Message-Id") or "").split("\n")[0].strip()
        if not (msg_id.startswith("<") and msg_id.endswith(">")):
            msg_id = f"<{msg_id}>"
        self.log(LOGINFO, f"pass, queued {msg_id}")
        return OK, f"Queued! {int(time.time())} qp {pid} {msg_id}"

    def run(self, transaction):
        """Start the program, feed descriptors 0 and 1, return (exit code, pid).

        Both pipes are written from threads, so a program that reads them in
        another order, or stops reading, cannot block us past the time-out."""
        msg_read, msg_write = os.pipe()
        env_read, env_write = os.pipe()
        try:
            proc = subprocess.Popen([self.program], stdin=msg_read, stdout=env_read)
        except OSError:
            for fd in (msg_write, env_write):
                os.close(fd)
            raise
        finally:
            os.close(msg_read)
            os.close(env_read)
        feeders = [threading.Thread(target=_feed, args=(fd, chunks), daemon=True)
                   for fd, chunks in ((msg_write, transaction.iter_message()),
                                      (env_write, [envelope(transaction)]))]
        for thread in feeders:
            thread.start()
        try:
            code = proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.log(LOGERROR, f"error, {self.program} took over {TIMEOUT} s; killed")
            proc.kill()
            code = proc.wait()
        for thread in feeders:
            thread.join(timeout=5)
        return code, proc.pid


def envelope(transaction):
    """F<sender>\\0T<rcpt>\\0...\\0 (qmail-queue(8))."""
    parts = [b"F" + transaction.sender.address.encode("utf-8", "surrogateescape")]
    parts += [b"T" + r.address.encode("utf-8", "surrogateescape") for r in transaction.recipients]
    return b"\0".join(parts) + b"\0\0"


def _feed(fd, chunks):
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
    except (OSError, ValueError):
        pass        # the program exited early (its exit code tells why) or was killed
