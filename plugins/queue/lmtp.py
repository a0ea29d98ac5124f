"""queue/lmtp - deliver each message by LMTP (RFC 2033) to a mailbox server such as
Dovecot, Cyrus or a Postfix lmtp listener, before the client hears a reply.

LMTP answers once per recipient after the message, SMTP only once per message, so
the reply to the client is chosen to stay true for every recipient:

  250 Queued! delivered to N recipient(s)              every recipient has the message
  452 Unable to queue message: <what happened>         some recipient failed only for now
  552 Unable to queue message: <what happened>         the ones left failed for good
  451 Unable to queue message (<reason>)               nothing was delivered: the server
        is unreachable, broken, or refused the session (DECLINED: a later queue plugin
        may still take the message)

<what happened> names the recipients that got the message and, for each that did
not, the server's own reply, e.g.
  452 Unable to queue message: delivered to <alice@example.test>;
      <busy@example.test>: 452 4.2.2 Quota exceeded (mailbox for user is full)

Never lost, never twice:
* A recipient the server refuses at RCPT (before the message is sent): nothing is
  delivered to anybody (RSET); 552 when every refusal was permanent, else 452. The
  sender learns the truth for each recipient (refuse unknown users at RCPT time with a
  recipient plugin so the others are not held up).
* Refusals after the message (quota, a broken mailbox): the recipients that got it are
  remembered (in the server's store, table lmtp_delivered, for `remember` days) by a
  fingerprint of the message: the sender, its Message-Id (or Date, From and Subject) and
  the body. The client gets 452 while any failure is temporary and retries; the retry
  goes only to the recipients still missing, and once they have it the client gets 250.
  When only permanent failures are left the client gets 552, whose text says who did
  get the message. A 250 is never given while any recipient lacks the message.
* A connection lost after the message was sent, before every answer came: the
  recipients that answered 2xx are remembered, the rest count as temporary failures.
The store must work: if it cannot be read the message is not sent (451).

Arguments:  HOST|/SOCKET [PORT] [timeout S] [remember DAYS]
  HOST        name or IP address of the LMTP server ([::1] style for IPv6), or
  /SOCKET     the path of its unix socket (Dovecot: /var/run/dovecot/lmtp)
  PORT        default 24
  timeout S   seconds for each step (connect, each command, each reply), default 60
  remember D  days a delivered recipient is remembered for retries, default 7 (longer
              than the clients' retry periods, e.g. Postfix's 5 day queue lifetime);
              0 turns the record off (then a retry after a partial delivery repeats it
              for the recipients that had it: avoid)

The LHLO name is config/me. BODY=8BITMIME and SMTPUTF8 are passed on when the client
used them and the server offers them. Hooks: queue.

Examples:
  queue/lmtp /var/run/dovecot/lmtp
  queue/lmtp 127.0.0.1 24 timeout 30
"""

import hashlib

from qpsmtpd_py.api import (
    DECLINED, DENY, DENYSOFT, LOGERROR, LOGINFO, LOGWARN, OK, Host, Int, Keyword, Number,
    Plugin, Positional, SMTPClient, SMTPError,
)

_MAX_REPLY = 400            # characters of failure detail in the reply to the client
DAY = 86400


class LMTP(Plugin):
    arguments = (
        Positional("HOST", Host(sockets=True), None, "the LMTP server", required=True),
        Positional("PORT", Int(min=1, max=65535), 24, "its port (not for a socket)"),
        Keyword("timeout", Number(min=1, max=3600, unit="seconds"), 60.0,
                "for each step of the dialogue"),
        Keyword("remember", Number(min=0, max=365, unit="days"), 7.0,
                "how long delivered recipients are remembered for retries (0: not at all)"),
    )

    def register(self, *args):
        self.host = self.args["HOST"]
        self.port = self.args["PORT"]
        self.timeout = self.args["timeout"]
        self.ttl = self.args["remember"] * DAY
        self.where = self.host if self.host.startswith("/") else f"{self.host}:{self.port}"

    # -- the queue hook ---------------------------------------------------------------
    def hook_queue(self, transaction):
        record = DeliveryRecord(self, transaction) if self.ttl else None
        try:
            earlier = record.delivered() if record else set()
        except Exception as exc:        # the store: never deliver without the record
            self.log(LOGERROR, f"error, delivery record unreadable: {exc}")
            return DECLINED, "Unable to queue message (delivery record unavailable)"
        todo = [r for r in transaction.recipients if r.address.lower() not in earlier]
        if not todo:
            self.log(LOGINFO, "pass, every recipient had this message already (a retry)")
            return OK, f"Queued! delivered to {len(transaction.recipients)} recipient(s) earlier"
        if earlier:
            self.log(LOGINFO, f"retry: {len(earlier)} recipient(s) had it already, "
                              f"{len(todo)} to go")
        outcome = Outcome(todo)
        try:
            with SMTPClient.connect(self.host, self.port, timeout=self.timeout) as lmtp:
                self.deliver(lmtp, transaction, outcome)
                lmtp.quit()
        except (SMTPError, OSError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            if not outcome.data_sent:               # nothing can have been delivered
                return self.unreachable(exc, reason)
            self.log(LOGERROR, f"error, {self.where} after the message: {reason}")
            outcome.lost(f"connection failed ({reason})")
        if record and outcome.delivered:
            try:
                record.add(r.address for r in outcome.delivered)
            except Exception as exc:
                self.log(LOGERROR, f"error, cannot remember the delivered recipients "
                                   f"({exc}): a retry will repeat them")
        return self.answer(outcome, len(earlier))

    def unreachable(self, exc, reason):
        reply = getattr(exc, "reply", None)
        if reply is None:
            self.log(LOGERROR, f"error, {self.where}: {reason}")
            return DECLINED, f"Unable to queue message ({reason.lower()})"
        self.log(LOGWARN, f"fail, {self.where} {exc}")
        return (DENY if exc.permanent else DENYSOFT), f"Unable to queue message: {reply}"

    def deliver(self, lmtp, transaction, outcome):
        """The LMTP dialogue; fills `outcome` with one result per recipient."""
        lmtp.start(self.app.me, verb="LHLO")
        lmtp.mail_from(transaction)
        accepted = []
        for rcpt in outcome.recipients:
            reply = lmtp.command(f"RCPT TO:{rcpt.format()}")
            if reply.kind == 2:
                accepted.append(rcpt)
            else:
                outcome.refuse(rcpt, reply)
                self.log(LOGINFO, f"fail, {self.where} refused {rcpt} at RCPT: {reply}")
        if outcome.failed:                   # before the message: send it to nobody
            lmtp.command("RSET")
            outcome.held_back()
            return
        outcome.data_sent = True
        outcome.pending = list(accepted)
        replies = [lmtp.send_data(transaction.iter_message())]     # one per recipient
        for rcpt in accepted:
            reply = replies.pop() if replies else lmtp.read_reply()
            outcome.pending.remove(rcpt)
            if reply.kind == 2:
                outcome.delivered.append(rcpt)
                self.log(LOGINFO, f"pass, {rcpt}: {reply}")
            else:
                outcome.refuse(rcpt, reply)
                self.log(LOGWARN, f"fail, {rcpt}: {reply}")

    def answer(self, outcome, earlier):
        if not outcome.failed:
            total = len(outcome.delivered) + earlier
            self.log(LOGINFO, f"pass, {self.where} delivered to {total} recipient(s)")
            return OK, f"Queued! delivered to {total} recipient(s)"
        detail = outcome.describe(earlier)
        if outcome.temporary:
            self.log(LOGWARN, f"fail, temporary: {detail}")
            return DENYSOFT, f"Unable to queue message: {detail}"
        self.log(LOGWARN, f"fail, permanent: {detail}")
        return DENY, f"Unable to queue message: {detail}"


class Outcome:
    """What happened to each recipient of one attempt. A failure is (recipient, text,
    permanent): permanent is True for a 5xx, False for anything temporary, None for a
    recipient the message was held back from because another one was refused."""

    def __init__(self, recipients):
        self.recipients = recipients
        self.delivered = []
        self.failed = []
        self.pending = []                # sent the message, no answer yet
        self.data_sent = False

    def refuse(self, rcpt, reply):
        self.failed.append((rcpt, str(reply), reply.kind == 5))

    def held_back(self):
        """A RCPT refusal: the message goes to nobody, the accepted ones included."""
        refused = {id(rcpt) for rcpt, _, _ in self.failed}
        self.failed += [(rcpt, "not sent, another recipient was refused", None)
                        for rcpt in self.recipients if id(rcpt) not in refused]

    def lost(self, reason):
        self.failed += [(rcpt, f"unknown, {reason}", False) for rcpt in self.pending]
        self.pending = []

    @property
    def temporary(self):
        return any(permanent is False for _, _, permanent in self.failed)

    def describe(self, earlier):
        parts = []
        if self.delivered:
            parts.append("delivered to " + ", ".join(r.format() for r in self.delivered))
        if earlier:
            parts.append(f"delivered earlier to {earlier} recipient(s)")
        parts += [f"{rcpt.format()}: {text}" for rcpt, text, _ in self.failed]
        text = "; ".join(parts)
        return text if len(text) <= _MAX_REPLY else text[:_MAX_REPLY - 3] + "..."


class DeliveryRecord:
    """The recipients that already have this message, kept in the store across retries."""

    def __init__(self, plugin, transaction):
        self.table = plugin.store.table("lmtp_delivered")
        self.ttl = plugin.ttl
        self.prefix = fingerprint(transaction) + "\0"

    def delivered(self):
        prefix = self.prefix.encode()
        return {key[len(prefix):].decode("utf-8", "surrogateescape")
                for key, _value in self.table.items(prefix=prefix)}

    def add(self, addresses):
        for address in addresses:
            self.table.set(self.prefix + address.lower(), "1", ttl=self.ttl)


def fingerprint(transaction):
    """The same message on a retry gives the same text: not our Received line or
    other headers added on the way, but the sender, the message's identity and body."""
    digest = hashlib.sha256()
    digest.update(transaction.sender.address.lower().encode("utf-8", "surrogateescape") + b"\0")
    header = transaction.header
    names = ("Message-Id",) if header.get("Message-Id") else ("Date", "From", "Subject")
    for name in names:
        digest.update((header.get(name) or "").strip().encode("utf-8", "surrogateescape") + b"\0")
    chunks = transaction.iter_message()
    next(chunks)                         # the header block
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()[:40]
