"""queue/exim-bsmtp - hand each message to Exim as batched SMTP (exim -bS, rsmtp), so
Exim queues and delivers it.

The batch (HELO config/me, MAIL FROM, one RCPT TO per recipient, DATA, the message
dot-stuffed, QUIT) is written to a scratch file in spool_dir and fed to
`<exim_path> [-C config] -bS`. Exim answers nothing when it took the message; on an
error it prints the SMTP reply it would have given and exits non-zero. So:

  250 Queued!                              exim exited 0 with nothing to say: the
                                           message is in its spool (fsynced)
  452 <exim's words>                       a 4xx reply, or one whose text starts with
                                           a 4.x.x status (a `defer` in acl_not_smtp
                                           comes out as "550 4.3.0 ...")
  552 <exim's words>                       a 5xx reply (acl_not_smtp deny, message_size_limit)
  451 Internal error enqueuing mail         exim could not be started or failed without a
                                           reply (a broken config, an unwritable spool)
                                           (DECLINED: a later queue plugin may take it)
  452 Unable to queue message (timed out)  exim took longer than `timeout` and was killed
Everything exim prints is logged.

Exim must trust the server's user (trusted_users or trusted_groups in its
configuration), or it replaces the envelope sender with that user. Exim runs its
non-SMTP ACL (acl_not_smtp), not the SMTP ones, for batched input.

Arguments (name/value pairs):
  exim_path PATH   the Exim binary, default /usr/sbin/rsmtp ("-bS" is added anyway)
  config FILE      run it with -C FILE (Exim gives up root unless FILE is in its
                   TRUSTED_CONFIG_LIST)
  timeout S        seconds exim may take, default 300
Hooks: queue.  Example:
  queue/exim-bsmtp exim_path /usr/sbin/exim4

Differences from qpsmtpd: a 4xx from exim is a temporary failure (qpsmtpd answered
every exim error with a permanent 5xx); exim is given a time limit.
"""

import os
import re
import subprocess

from qpsmtpd_py.api import (
    DECLINED, DENY, DENYSOFT, LOGERROR, LOGINFO, Keyword, Number, OK, Path, Plugin,
)

_REPLY = re.compile(r"^([45]\d\d)[ -](.*)$")


class EximBSMTP(Plugin):
    arguments = (
        Keyword("exim_path", Path(), "/usr/sbin/rsmtp", "the Exim binary"),
        Keyword("config", Path(), None, "run Exim with -C FILE"),
        Keyword("timeout", Number(min=1, max=3600, unit="seconds"), 300.0,
                "how long exim may take"),
    )

    def register(self, *args):
        self.exim = self.args["exim_path"]
        self.argv = [self.exim] + (["-C", self.args["config"]] if self.args["config"] else []) + ["-bS"]
        self.timeout = self.args["timeout"]
        if not os.access(self.exim, os.X_OK):
            self.log(LOGERROR, f"Could not find exim at {self.exim}; "
                               "please set exim_path in config/plugins")

    def hook_queue(self, transaction):
        path = transaction.temp_file()
        try:
            with open(path, "wb") as out:
                write_batch(out, transaction, self.app.me)
            with open(path, "rb") as batch:
                proc = subprocess.run(self.argv, stdin=batch, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.log(LOGERROR, f"error, {self.exim} took over {self.timeout:g} s; killed")
            return DENYSOFT, "Unable to queue message (timed out)"
        except OSError as exc:
            self.log(LOGERROR, f"error, cannot run {self.exim}: {exc}")
            return DECLINED, "Internal error enqueuing mail"
        said = (proc.stdout + proc.stderr).decode("utf-8", "replace").strip()
        for line in said.splitlines():
            self.log(LOGERROR if proc.returncode else LOGINFO, f"exim: {line}")
        reply = next((m for m in map(_REPLY.match, proc.stdout.decode("utf-8", "replace")
                                     .splitlines()) if m), None)
        if reply:
            code, text = int(reply.group(1)), reply.group(2).strip()
            temporary = code < 500 or re.match(r"4\.\d{1,3}\.\d{1,3}\b", text)
            self.log(LOGERROR, f"fail, BSMTP enqueue refused: {code} {text}")
            return (DENYSOFT if temporary else DENY), text
        if proc.returncode != 0:
            self.log(LOGERROR, f"error, BSMTP enqueue failed; exit code {proc.returncode} "
                               f"from {' '.join(self.argv)}")
            return DECLINED, "Internal error enqueuing mail"
        self.log(LOGINFO, "pass, enqueued to exim via BSMTP")
        return OK, "Queued!"


def write_batch(out, transaction, helo):
    out.write(f"HELO {helo}\nMAIL FROM:{transaction.sender.format()}\n"
              .encode("utf-8", "surrogateescape"))
    for rcpt in transaction.recipients:
        out.write(f"RCPT TO:{rcpt.format()}\n".encode("utf-8", "surrogateescape"))
    out.write(b"DATA\n")
    pending = b""
    for chunk in transaction.iter_message():
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()                     # an unfinished line: wait for the rest
        for line in lines:
            out.write(b"." + line + b"\n" if line.startswith(b".") else line + b"\n")
    if pending:
        out.write(b"." + pending + b"\n" if pending.startswith(b".") else pending + b"\n")
    out.write(b".\nQUIT\n")
