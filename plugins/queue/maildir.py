"""queue/maildir - deliver each message into a Maildir, safely on disk before the 250.

Arguments:  DIR [SUBDIR_PATTERN] [MODE]
  DIR             the Maildir (cur/ new/ tmp/ are created); a relative DIR is taken
                  relative to the config directory (qpsmtpd: the working directory)
  SUBDIR_PATTERN  deliver one copy per recipient under DIR/<pattern>, where %l is
                  the local part, %d the domain and %u the whole address (characters
                  other than -A-Za-z0-9+_.,@= become _)
  MODE            octal permissions for new directories (files lose the x bits),
                  default 700

Each file gets Return-Path and Delivered-To headers. The file and the new/
directory are fsynced before the client hears "250 Queued! <Message-Id>". With
several recipients every copy is written and synced before any is linked into
new/; on an error the copies already linked are removed and the client gets a
temporary failure, so a retry never duplicates mail. Nothing is left in tmp/ after
a failed write; a full disk (ENOSPC, EDQUOT) is answered 452 4.3.1 Insufficient
system storage. At start, files in tmp/ older than 36 hours (left by a killed
worker or a crash) are removed, as qmail's maildir rules say.

Hooks: queue.  Examples:
  queue/maildir /var/spool/qpsmtpd/Maildir
  queue/maildir /var/spool/qpdeliver %d/%l 770
"""

import errno
import glob
import os
import re
import socket
import time

from qpsmtpd_py.api import (
    DECLINED, DENYSOFT, LOGERROR, LOGINFO, OK, Path, Plugin, Positional, Text, beside, fsync_dir,
    unlink_quietly,
)

_UNSAFE = re.compile(r"[^-A-Za-z0-9+_.,@=]")
STALE_AGE = 36 * 3600       # qmail: a tmp/ file untouched for 36 hours is garbage
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class Maildir(Plugin):
    counter = 0
    arguments = (
        Positional("DIR", Path(), None, "the Maildir (cur/ new/ tmp/ are created)",
                   required=True),
        Positional("SUBDIR_PATTERN", Text(r".*%[ldu].*", "a pattern with %l, %d or %u"), None,
                   "deliver one copy per recipient under DIR/<pattern>"),
        Positional("MODE", Text(r"[0-7]{3}", "a three-digit octal number"), "700",
                   "permissions for new directories"),
    )

    def register(self, *args):
        # a relative DIR is taken beside config/plugins, not in the working directory
        self.maildir = beside(self.args["DIR"], self.app.config.path("plugins"))
        self.subdirs = self.args["SUBDIR_PATTERN"]
        self.dir_mode = int(self.args["MODE"], 8)
        self.file_mode = self.dir_mode & 0o666
        self.hostname = re.sub(r"[^\w.-]", "_", socket.gethostname())
        if not self.subdirs:
            self.make_maildir(self.maildir)
        self.remove_stale_tmp()

    def remove_stale_tmp(self, now=None):
        """Delete tmp/ files older than STALE_AGE in the Maildir, or in every
        per-recipient Maildir the pattern can name."""
        pattern = re.sub(r"[^/]*%[ldu][^/]*", "*", self.subdirs) if self.subdirs else ""
        cutoff = (now or time.time()) - STALE_AGE
        removed = 0
        for tmp in glob.glob(os.path.join(glob.escape(self.maildir), pattern, "tmp")):
            try:
                names = os.listdir(tmp)
            except OSError:
                continue
            for name in names:
                path = os.path.join(tmp, name)
                try:
                    if os.lstat(path).st_mtime < cutoff:
                        os.unlink(path)
                        removed += 1
                except OSError:
                    pass
        if removed:
            self.log(LOGINFO, f"removed {removed} stale file{'s' if removed > 1 else ''} "
                     "(over 36 hours old) from tmp/")

    def make_maildir(self, path):
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(path, sub), mode=self.dir_mode, exist_ok=True)

    def hook_queue(self, transaction):
        if self.subdirs:
            targets = [(self.user_dir(rcpt), [rcpt]) for rcpt in transaction.recipients]
        else:
            targets = [(self.maildir, transaction.recipients)]
        written, linked = [], []
        try:
            for maildir, rcpts in targets:
                written.append(self.write_tmp(transaction, maildir, rcpts))
            for tmp_path, new_path in written:
                os.link(tmp_path, new_path)
                linked.append(new_path)
            for new_dir in {os.path.dirname(p) for p in linked}:
                fsync_dir(new_dir)
        except OSError as exc:
            self.log(LOGERROR, f"queue error: {exc}")
            for path in linked:
                unlink_quietly(path)
            if exc.errno in _DISK_FULL:
                return DENYSOFT, "Insufficient system storage, try again later"   # 452 4.3.1
            return DECLINED, "queue error, try again later"
        finally:
            for tmp_path, _new in written:
                unlink_quietly(tmp_path)
        msg_id = (transaction.header.get("Message-Id") or "").split("\n")[0].strip()
        return OK, f"Queued! {msg_id}"      # qpsmtpd: "Queued! " when there is none

    def user_dir(self, rcpt):
        user = _UNSAFE.sub("_", rcpt.user or "")
        host = _UNSAFE.sub("_", rcpt.host or "")
        sub = self.subdirs.replace("%l", user).replace("%d", host).replace("%u", f"{user}@{host}")
        path = os.path.join(self.maildir, sub)
        self.make_maildir(path)
        return path

    def unique_name(self):
        Maildir.counter += 1
        now = time.time()
        return f"{int(now)}.P{os.getpid()}M{int(now % 1 * 1e6)}Q{Maildir.counter}.{self.hostname}"

    def write_tmp(self, transaction, maildir, rcpts):
        name = self.unique_name()
        tmp_path = os.path.join(maildir, "tmp", name)
        fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self.file_mode)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(f"Return-Path: {transaction.sender.format()}\n".encode("utf-8", "surrogateescape"))
                for rcpt in rcpts:
                    out.write(f"Delivered-To: {rcpt.address}\n".encode("utf-8", "surrogateescape"))
                transaction.write_message(out)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            unlink_quietly(tmp_path)            # a failed write leaves nothing in tmp/
            raise
        return tmp_path, os.path.join(maildir, "new", name)
