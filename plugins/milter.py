"""milter - run a Sendmail mail filter (milter: opendkim, opendmarc, clamav-milter,
rspamd's milter proxy ...) as if it were a plugin.

One line per milter; several lines run several milters in a row, each one seeing
the message as the milters before it left it. At connect the plugin opens a
connection to the milter and negotiates the protocol (version 6 by default, the
one current milters and rspamd need; version 2, what qpsmtpd spoke, with
`protocol 2`), then feeds it the session as it happens, with Sendmail's macros:

  connect      client name/address/port ({client_addr}, {client_name}, j, _, {daemon_name},
               {if_addr} ...)
  HELO/EHLO    the name given ({tls_version}, {cipher} after STARTTLS)
  MAIL         sender and ESMTP parameters (i, {mail_addr}, {auth_authen}, {auth_type} ...)
  RCPT         each accepted-so-far recipient ({rcpt_addr} ...)
  DATA         (protocol 6)
  data_post    every header field, end of headers, the body (CRLF, 64 KB chunks),
               end of message
Stages and replies the milter turned off in the negotiation are left out, and a
milter that asks for particular macros (v6 symbol lists) gets only those.

What the milter answers:
  continue / accept      go on / this message (or at connect: this connection)
                         needs no more filtering
  reject / tempfail /    refuse with qpsmtpd's wording:
  a reply code             `Rejected at <stage> by <name> milter (<explanation>)`
                         stages: connection, HELO, MAIL FROM, RCPT TO, DATA,
                         header <Name>, end headers, body, end of DATA; explanation
                         `Reject command with 5xx error`, `... 4xx error`, or the
                         milter's own reply text. A refusal at connect is returned
                         at HELO (and MAIL, RCPT), as qpsmtpd did. 4xx replies and
                         tempfail refuse temporarily, 5xx and reject for good; at RCPT
                         only that recipient is refused.
  discard                the message is accepted (250) and dropped: nothing is queued
  end-of-message changes, applied in order: add header, insert header at a
                         position, change or delete the N-th header of a name,
                         replace body, add recipient, delete recipient, change
                         sender, quarantine (see `quarantine` below)

Arguments:
  NAME                   a name for logs and replies (required)
  [HOST:]PORT            where the milter listens (host default 127.0.0.1); also
                         /path or unix:/path, and Postfix's inet:PORT@HOST, unix:PATH
  protocol 2|6           the protocol version offered; default 6
  timeout SECONDS        the most the milter may take to answer one command
                         (connecting included); default 30
  failure tempfail|accept  when the milter cannot be reached, breaks the protocol or
                         times out: temp-fail this and every later command of the
                         connection (default, as Postfix's milter_default_action) or go
                         on without this milter, the message tagged
                         `X-Scan-Failed: milter NAME: REASON`
  quarantine deliver|tempfail|reject   what a quarantine request does: deliver the
                         message with `X-Milter-Quarantine: NAME: REASON` (default),
                         or refuse it
Notes: transaction note `milter_discard` (the milter that discarded the message),
`milter_quarantine` (its reason).
Load the milter lines before the queue plugin (a discarded message must not reach it).

Hooks: connect, helo, ehlo, mail, rcpt, data, data_post, queue, reset_transaction,
disconnect.
Examples:
  milter opendkim 8891
  milter opendmarc localhost:8893 protocol 6 timeout 10
  milter rspamd inet:11332@127.0.0.1 failure accept

Differences from qpsmtpd: qpsmtpd used Net::Milter (protocol 2 only); every
refusal was a permanent DENY, even a tempfail; a discard was taken for a reject;
header changes were collected and then lost, and body, recipient and sender changes
were not applied; an unreachable or stuck milter failed the session in odd places
or hung it. Here all of them work as described, and `timeout`/`failure` bound a
misbehaving milter. Perl's " at ... line N." is no longer part of the reply.
"""

import re
import secrets
import tempfile

from qpsmtpd_py.api import (
    DECLINED, DENY, DENYSOFT, DENYSOFT_DISCONNECT, LOGDEBUG, LOGERROR, LOGINFO, LOGWARN, OK,
    Address, Checked, Choice, Keyword, MilterError, MilterSession, Plugin, Positional, Text,
    scan_arguments,
)

EXPLAIN = {"reject": "Reject command with 5xx error", "tempfail": "Reject command with 4xx error"}


def milter_address(text):
    """[host:]port, /path, unix:/path, local:/path, inet:port@host, inet6:port@host."""
    match = re.fullmatch(r"inet6?:(\d+)@(\S+)", text)
    if match:
        port, host = match.groups()
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    for prefix in ("unix:", "local:"):
        if text.startswith(prefix):
            return text[len(prefix):]
    if text.startswith("/"):
        return text
    if text.isdigit():
        return f"127.0.0.1:{text}"
    MilterSession(text)                     # raises ValueError for a bad host:port
    return text


class State:
    """This milter's state for one SMTP connection (connection note)."""

    def __init__(self):
        self.session = None
        self.refusal = None         # (code, message): every later command gets it
        self.done = False           # accepted the connection, or failed under `accept`
        self.failed = None          # why the milter was given up (failure accept)


class Milter(Plugin):
    arguments = (
        Positional("name", Text(r"\S+", "a word"), None, "the milter's name", required=True),
        Positional("address", Checked(milter_address, "[host:]port, /path or inet:port@host",
                                      "[HOST:]PORT"), None, "where it listens", required=True),
        Keyword("protocol", Choice("2", "6"), "6", "the milter protocol version offered"),
        *scan_arguments(30.0, what="the milter"),
        Keyword("quarantine", Choice("deliver", "tempfail", "reject"), "deliver",
                "what a quarantine request does"),
    )

    def register(self, *args):
        self.name = self.args["name"]
        self.key = f"milter {self.name} {id(self)}"

    # -- per connection ---------------------------------------------------------------------
    def state(self):
        return self.connection.notes.setdefault(self.key, State())

    def hook_connect(self, transaction):
        state = self.state()
        conn = self.connection
        session = MilterSession(self.args["address"], timeout=self.args["timeout"],
                                version=int(self.args["protocol"]), name=self.name)
        try:
            session.open()
            state.session = session
            self.log(LOGDEBUG, f"negotiated version {session.version}, actions "
                     f"{session.actions:#x}, protocol {session.protocol:#x}")
            reply = session.connect(conn.remote_host, conn.remote_ip or None, conn.remote_port,
                                    self.connect_macros())
        except MilterError as exc:
            self.failure(state, "connection", exc)
            return DECLINED
        result = self.verdict(state, reply, "connection")
        if result is not DECLINED:
            state.refusal = result          # told at HELO, as qpsmtpd did
        return DECLINED

    def hook_helo(self, transaction, host, *rest):
        return self.stage(transaction, "HELO", lambda s: s.helo(host, self.helo_macros()),
                          message=False)

    hook_ehlo = hook_helo

    def hook_mail(self, transaction, sender, params):
        transaction.notes.setdefault(self.key, {})["open"] = True
        args = [sender.format()] + esmtp_words(params)
        return self.stage(transaction, "MAIL FROM", lambda s: s.mail(args, self.mail_macros(sender)))

    def hook_rcpt(self, transaction, rcpt, params):
        args = [rcpt.format()] + esmtp_words(params)
        return self.stage(transaction, "RCPT TO", lambda s: s.rcpt(args, self.rcpt_macros(rcpt)))

    def hook_data(self, transaction):
        return self.stage(transaction, "DATA", lambda s: s.data({"i": self.queue_id(transaction)}))

    def hook_data_post(self, transaction):
        state = self.state()
        if state.failed and not state.refusal:
            transaction.header.add("X-Scan-Failed", f"milter {self.name}: {state.failed}",
                                   prepend=True)
        result = self.stage(transaction, None, None)
        if result is not DECLINED or self.skipping(state, transaction):
            return result
        session = state.session
        try:
            for name, value in list(transaction.header):
                if session.leading_space:
                    value = getattr(value, "sep", ": ")[1:] + value
                result = self.after(state, transaction, session.header(name, value), f"header {name}")
                if result is not None:
                    return result
            macros = {"i": self.queue_id(transaction)}
            result = self.after(state, transaction, session.eoh(macros), "end headers")
            if result is not None:
                return result
            result = self.send_body(state, transaction, session)
            if result is not None:
                return result
            reply, changes = session.eom(macros)
        except MilterError as exc:
            return self.failure(state, "end of DATA", exc, transaction)
        transaction.notes.get(self.key, {}).pop("open", None)
        result = self.verdict(state, reply, "end of DATA", transaction)
        if result is DECLINED and changes:
            result = self.apply(transaction, changes)
        return result

    def hook_queue(self, transaction):
        if transaction.notes.get("milter_discard") == self.name:
            self.log(LOGINFO, "message discarded, as milter asked")
            return OK, "Queued"
        return DECLINED

    def hook_reset_transaction(self, transaction):
        state = self.connection.notes.get(self.key) if self.connection else None
        if state and state.session and transaction is not None \
                and transaction.notes.get(self.key, {}).get("open"):
            try:
                state.session.abort()
            except MilterError as exc:
                self.log(LOGWARN, f"error, {exc}")
        return DECLINED

    def hook_disconnect(self, transaction):
        state = self.connection.notes.pop(self.key, None)
        if state and state.session:
            state.session.quit()
        return DECLINED

    # -- stages -----------------------------------------------------------------------------
    def skipping(self, state, transaction):
        """No more filtering for this message: milter accepted or discarded it."""
        if state.done or state.session is None:
            return True
        return bool(transaction is not None and transaction.notes.get(self.key, {}).get("done"))

    def stage(self, transaction, stage, send, message=True):
        state = self.state()
        if state.refusal is not None:
            return state.refusal
        if stage is None or self.skipping(state, transaction if message else None):
            return DECLINED
        try:
            reply = send(state.session)
        except MilterError as exc:
            return self.failure(state, stage, exc, transaction)
        return self.verdict(state, reply, stage, transaction if message else None)

    def after(self, state, transaction, reply, stage):
        """None to go on sending, else the hook's answer."""
        result = self.verdict(state, reply, stage, transaction)
        if result is not DECLINED:
            return result
        return DECLINED if self.skipping(state, transaction) else None

    def send_body(self, state, transaction, session):
        fh = transaction.body_fh()
        try:
            carry = b""
            while True:
                chunk = fh.read(32768)
                if not chunk:
                    break
                self.keepalive()
                data = carry + chunk
                carry = b""
                if data.endswith(b"\r"):
                    data, carry = data[:-1], b"\r"
                data = re.sub(rb"\r?\n", b"\r\n", data)
                for start in range(0, len(data), 65535):
                    reply = session.body(data[start:start + 65535])
                    if reply is not None and reply.action == "skip" and session.can_skip:
                        return None
                    result = self.after(state, transaction, reply, "body")
                    if result is not None:
                        return result
            if carry:
                result = self.after(state, transaction, session.body(carry), "body")
                if result is not None:
                    return result
            return None
        finally:
            transaction.body_bytes(0)

    def verdict(self, state, reply, stage, transaction=None):
        """A milter reply -> DECLINED (go on) or the hook's refusal."""
        if reply is None or reply.action in ("continue", "skip"):
            return DECLINED
        action = reply.action
        if action == "accept":
            self.log(LOGINFO, f"pass, accepted at {stage}")
            if transaction is None:
                state.done = True
            else:
                transaction.notes.setdefault(self.key, {})["done"] = True
            return DECLINED
        if action == "discard":
            self.log(LOGINFO, f"discard at {stage}")
            if transaction is not None:
                transaction.notes["milter_discard"] = self.name
                transaction.notes.setdefault(self.key, {})["done"] = True
            return DECLINED
        if action in ("conn_fail", "shutdown"):
            self.log(LOGWARN, f"fail, milter asked to end the connection ({action}) at {stage}")
            state.refusal = (DENYSOFT_DISCONNECT,
                             f"Rejected at {stage} by {self.name} milter (connection failure)")
            return state.refusal
        explanation = reply.text if action == "replycode" else EXPLAIN[action]
        temporary = action == "tempfail" or (reply.code or "5").startswith("4")
        if action == "replycode":
            explanation = re.sub(r"^\d{3}[ -]", "", explanation).replace("\r\n", " ").strip()
        self.log(LOGINFO, f"fail, {action} at {stage}: {reply.text or explanation}")
        return (DENYSOFT if temporary else DENY), \
            f"Rejected at {stage} by {self.name} milter ({explanation})"

    def failure(self, state, stage, exc, transaction=None):
        """The milter failed: the failure policy."""
        if state.session is not None:
            state.session.close()
        if self.args["failure"] == "accept":
            self.log(LOGWARN, f"error, {exc}; going on without milter {self.name} (failure accept)")
            state.done, state.failed = True, " ".join(str(exc).split())[:200]
            if transaction is not None and stage == "end of DATA":
                transaction.header.add("X-Scan-Failed", f"milter {self.name}: {state.failed}",
                                       prepend=True)
            return DECLINED
        self.log(LOGERROR, f"error, {exc}")
        state.refusal = (DENYSOFT, f"Rejected at {stage} by {self.name} milter (milter unavailable)")
        return state.refusal

    # -- end-of-message changes ---------------------------------------------------------------
    def apply(self, transaction, changes):
        header = transaction.header
        for change in changes:
            kind = change[0]
            self.log(LOGINFO, f"milter change: {kind} {change[1:] if kind != 'replace_body' else ''}")
            if kind == "add_header":
                header.add(change[1], self.value(change[2]))
            elif kind == "insert_header":
                index = min(change[1], len(header.fields))
                header.fields.insert(index, (change[2], self.value(change[3])))
            elif kind == "change_header":
                change_header(header, change[1], change[2], self.value(change[3]))
            elif kind == "replace_body":
                replacement = transaction.notes.setdefault(self.key, {}).get("body")
                if replacement is None:
                    replacement = tempfile.TemporaryFile(dir=transaction.spool_dir or None)
                    transaction.notes[self.key]["body"] = replacement
                replacement.write(change[1])
            elif kind == "add_rcpt":
                address = Address.parse(change[1])
                if address is not None and not address.is_null:
                    transaction.add_recipient(address)
            elif kind == "delete_rcpt":
                gone = (Address.parse(change[1]) or Address()).address.lower()
                transaction.recipients = [r for r in transaction.recipients
                                          if r.address.lower() != gone]
            elif kind == "change_from":
                address = Address.parse(change[1])
                if address is not None:
                    transaction.sender = address
            elif kind == "quarantine":
                transaction.notes["milter_quarantine"] = change[1]
                if self.args["quarantine"] != "deliver":
                    code = DENY if self.args["quarantine"] == "reject" else DENYSOFT
                    return code, f"Rejected at end of DATA by {self.name} milter (quarantined: {change[1]})"
                header.add("X-Milter-Quarantine", f"{self.name}: {change[1]}")
        replacement = transaction.notes.get(self.key, {}).pop("body", None)
        if replacement is not None:
            with replacement:
                transaction.body_replace(crlf_to_lf(replacement, transaction.spool_dir))
        if not transaction.recipients:
            self.log(LOGINFO, "every recipient was deleted: the message is discarded")
            transaction.notes["milter_discard"] = self.name
        return DECLINED

    def value(self, value):
        """A header value from the milter, as the engine keeps them (no leading space)."""
        session = self.state().session
        if session is not None and session.leading_space:
            return value[1:] if value.startswith(" ") else value
        return value

    # -- macros -------------------------------------------------------------------------------
    def queue_id(self, transaction):
        return transaction.notes.setdefault("milter_queue_id", secrets.token_hex(5).upper())

    def connect_macros(self):
        conn = self.connection
        me = self.config("me")
        host = conn.remote_host
        return {"j": me, "_": f"{host or 'unknown'} [{conn.remote_ip}]",
                "{daemon_name}": "qpsmtpd_py", "v": "qpsmtpd_py",
                "{client_addr}": conn.remote_ip, "{client_port}": conn.remote_port,
                "{client_name}": host or f"[{conn.remote_ip}]", "{client_ptr}": host or "unknown",
                "{if_name}": me, "{if_addr}": conn.local_ip, "{daemon_addr}": conn.local_ip,
                "{daemon_port}": conn.local_port}

    def helo_macros(self):
        tls = self.connection.tls or {}
        return {"{tls_version}": tls.get("version"), "{cipher}": tls.get("cipher"),
                "{cipher_bits}": tls.get("bits")}

    def mail_macros(self, sender):
        conn = self.connection
        return {"i": self.queue_id(self.transaction), "{mail_addr}": sender.address,
                "{mail_host}": sender.host, "{mail_mailer}": "esmtp" if conn.hello == "ehlo" else "smtp",
                "{auth_type}": conn.auth_mechanism, "{auth_authen}": conn.auth_user}

    def rcpt_macros(self, rcpt):
        return {"{rcpt_addr}": rcpt.address, "{rcpt_host}": rcpt.host, "{rcpt_mailer}": "esmtp"}


def esmtp_words(params):
    """ESMTP parameters (a dict) as MAIL/RCPT argument words: SIZE=100, BODY=8BITMIME."""
    words = []
    for key, value in (params or {}).items():
        words.append(f"{key.upper()}={value}" if value not in (None, True, "") else key.upper())
    return words


def change_header(header, index, name, value):
    """Sendmail's change-header: the index-th (1-based) field of `name` gets `value`;
    an empty value deletes it; a missing one is added."""
    seen = 0
    for position, (field, _) in enumerate(header.fields):
        if field.lower() == name.lower():
            seen += 1
            if seen == max(index, 1):
                if value:
                    header.fields[position] = (field, value)
                else:
                    del header.fields[position]
                return
    if value:
        header.add(name, value)


def crlf_to_lf(fh, directory=None):
    """A new body from the milter (CRLF) -> a file object with LF line ends."""
    fh.seek(0)
    out = tempfile.TemporaryFile(dir=directory or None)
    carry = b""
    while True:
        chunk = fh.read(65536)
        if not chunk:
            break
        data = carry + chunk
        carry = b""
        if data.endswith(b"\r"):
            data, carry = data[:-1], b"\r"
        out.write(data.replace(b"\r\n", b"\n"))
    out.write(carry)
    out.seek(0)
    return out
