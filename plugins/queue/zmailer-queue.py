"""queue/zmailer-queue - hand each message to ZMailer by writing it into its router's
input directory, as ZMailer's own mail_open()/mail_close() (libzmailer) do.

The file is ZMailer's envelope, then the message:

    external
    rcvdfrom client.example.com (192.0.2.10)
    with esmtp
    from <sender@example.com>
    to <rcpt@example.net>
    to <other@example.net>
    env-end
    Received: from ... (our Received line and the rest of the header)

    body

It is written in POSTOFFICE/public/ under a temporary name, flushed to disk
(fsync), then linked into POSTOFFICE/router/ under its inode number - the name
ZMailer's router expects - and the directory is synced too. So the router never
sees a half-written file, and the client hears 250 only when the message would
survive a crash:

  250 Queued! <Message-Id> (ZMailer router file <inode>)
  451 Unable to queue message (<reason>)   the spool cannot be written (missing,
      not writable, disk full); nothing is left behind (DECLINED: a later queue
      plugin may still take the message)

Arguments:  [POSTOFFICE]   ZMailer's spool, default /var/spool/postoffice (its
                           public/ and router/ directories must exist and be
                           writable by the server's user)
Hooks: queue.  Example:
  queue/zmailer-queue /var/spool/postoffice

No upstream source was found for this plugin; the format is ZMailer's documented
envelope (from, to, rcvdfrom, with, external, env-end). Tested against the format,
not a running ZMailer.
"""

import os

from qpsmtpd_py.api import (
    DECLINED, LOGERROR, LOGINFO, OK, Path, Plugin, Positional, fsync_dir, unlink_quietly,
)


class ZmailerQueue(Plugin):
    arguments = (
        Positional("POSTOFFICE", Path(), "/var/spool/postoffice", "ZMailer's spool directory",
                   keyword=True),
    )

    def register(self, *args):
        self.public = os.path.join(self.args["POSTOFFICE"], "public")
        self.router = os.path.join(self.args["POSTOFFICE"], "router")

    def hook_queue(self, transaction):
        tmp = os.path.join(self.public, f"qpsmtpd.{os.getpid()}.{id(transaction)}")
        try:
            inode = self.write(tmp, transaction)
        except OSError as exc:
            self.log(LOGERROR, f"error, cannot queue into {self.router}: {exc}")
            return DECLINED, f"Unable to queue message ({(exc.strerror or str(exc)).lower()})"
        finally:
            unlink_quietly(tmp)
        msg_id = (transaction.header.get("Message-Id") or "").split("\n")[0].strip()
        self.log(LOGINFO, f"pass, queued as {self.router}/{inode}")
        return OK, f"Queued! {msg_id} (ZMailer router file {inode})".replace("  ", " ")

    def write(self, tmp, transaction):
        """Write, sync, link into router/ by inode; returns the inode."""
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "wb") as out:
            out.write(envelope(self.connection, transaction))
            transaction.write_message(out)
            out.flush()
            os.fsync(out.fileno())
            inode = os.fstat(out.fileno()).st_ino
        target = os.path.join(self.router, str(inode))
        os.link(tmp, target)
        try:
            fsync_dir(self.router)
        except OSError:
            unlink_quietly(target)
            raise
        return inode


def envelope(connection, transaction):
    ip = connection.remote_ip
    name = connection.remote_host or f"[{ip}]"
    lines = ["external", f"rcvdfrom {name} ({ip})",
             f"with {'esmtp' if connection.hello == 'ehlo' else 'smtp'}",
             f"from {transaction.sender.format()}"]
    lines += [f"to {rcpt.format()}" for rcpt in transaction.recipients]
    lines.append("env-end")
    return ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")
