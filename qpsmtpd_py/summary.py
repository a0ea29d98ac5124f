"""The lines an operator reads first (LOGNOTICE, shown at the default loglevel):
one per refused command or message, one per mail transaction and one per
connection, in the spirit of qpsmtpd's log/summarize: who the client was, what
it asked for, what it got, and which plugin decided.

    refused RCPT TO:<x@remote.example>: 550 relaying denied (rcpt_ok)
    transaction: client [192.0.2.10] helo client.test from <a@b.test> to <u@example.test>
        refused_to <x@remote.example>=550 size 312 result queued (queue/maildir): 250 Queued!
    connection: client mx.example [192.0.2.10] helo client.test transactions 1 queued 1
        refused 0 commands_refused 1 end quit duration 0.21s

Each is one line (wrapped here). Client input is cut to a bounded length and its
control characters become '?', so a line can neither be forged nor grow without bound.
"""

import itertools
import os
import re
import time

from . import constants as C
from . import metrics

_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")
_SHOWN = 120          # characters of client input shown per field
_VERBS = {"helo", "ehlo", "mail", "rcpt", "data", "rset", "noop", "vrfy", "help", "quit", "auth",
          "starttls", ""}


def _clean(text, limit=_SHOWN):
    text = _UNSAFE.sub("?", str(text))
    return text if len(text) <= limit else text[:limit] + "..."


def _argument(text):
    """'MAIL FROM:<a@b> SIZE=9' -> '<a@b>': the path the client gave."""
    rest = text.split(":", 1)[1] if ":" in text else ""
    return _clean(rest.strip().split(" ", 1)[0] or "<>") if rest.strip() else "-"


class Summary:
    """Watches one session's replies and transactions and logs the summary lines."""

    def __init__(self, session):
        self.session = session
        self.txn = None                 # dict for the mail transaction since MAIL
        self.transactions = self.queued = self.refused = self.commands_refused = 0
        self.end = "gone"               # quit | timeout | gone | refused (connect)

    # -- replies ------------------------------------------------------------------------
    def reply(self, code, lines):
        """Called for every reply the session sends."""
        session = self.session
        verb = session.verb
        by = session.decided_by
        session.decided_by = None
        by = by.plugin_name if by is not None else None
        # the reply text is logged only for refusals and the end of DATA (or a time-out)
        text = _clean(lines[0] if lines else "", 200) if code >= 400 or verb in ("data", "") else ""
        who = f" ({by})" if by else ""
        if code >= 400:
            self.commands_refused += 1
            session.log(C.LOGNOTICE, f"refused {self._command()}: {code} {text}{who}"
                        if verb else f"sent {code} {text}{who}")
            metrics.count("qpsmtpd_refusals_total", {"command": verb if verb in _VERBS else "other",
                                                     "code": code, "plugin": by or ""})
            if not verb:
                self.end = "timeout" if "timeout" in text else f"closed {code}"
        if verb == "quit":
            self.end = "quit"
        if verb == "mail":
            self.txn = dict(sender=_argument(self._original()), to=[], refused_to=[], result=None)
            if code >= 400:
                self.txn.update(result=f"refused at MAIL {code}{who}: {text}", by=by, code=code)
        elif self.txn is None:
            return
        elif verb == "rcpt":
            if 200 <= code < 300:
                self.txn["to"].append(_argument(self._original()))
            elif code >= 400:
                self.txn["refused_to"].append(f"{_argument(self._original())}={code}")
        elif verb == "data" and code != 354:
            word = "queued" if 200 <= code < 300 else "refused"
            self.txn.update(result=f"{word}{who}: {code} {text}", by=by, code=code)
        elif verb == "" and code == 421 and self.txn["result"] is None:
            self.txn.update(result=f"timed out: {code} {text}", code=code)

    def _original(self):
        return str(self.session.connection.notes.get("original_string") or "")

    def _command(self):
        text = self._original()
        if self.session.verb == "auth":
            text = " ".join(text.split(" ", 2)[:2]) + " (credentials hidden)"
        if self.session.verb == "data":
            return "DATA" if text.upper() == "DATA" else _clean(text)
        return _clean(text)

    # -- ends ---------------------------------------------------------------------------
    def end_transaction(self, transaction):
        """The transaction begun by MAIL is over (RSET, a new MAIL, the message
        answered, the client gone): one line about it."""
        txn, self.txn = self.txn, None
        if txn is None:
            return
        self.transactions += 1
        result = txn["result"] or "no message"
        metrics.count("qpsmtpd_transactions_total", {
            "result": result.split(" ")[0] if txn["result"] else "no_message",
            "plugin": txn.get("by") or "", "code": txn.get("code") or ""})
        if result.startswith("queued"):
            self.queued += 1
        elif result.startswith("refused"):
            self.refused += 1
        size = transaction.data_size if transaction is not None else 0
        conn = self.session.connection
        parts = [f"transaction: client [{conn.remote_ip}]",
                 f"helo {_clean(conn.hello_host or '-')}", f"from {txn['sender']}",
                 f"to {','.join(txn['to']) or '-'}"]
        if txn["refused_to"]:
            parts.append(f"refused_to {','.join(txn['refused_to'])}")
        parts += [f"size {size}", f"result {result}"]
        self.session.log(C.LOGNOTICE, " ".join(parts))

    def end_session(self):
        metrics.count("qpsmtpd_connections_total", {"end": self.end.split(" ")[0]})
        metrics.observe("qpsmtpd_session_seconds", time.time() - self.session.started)
        metrics.flush()
        conn = self.session.connection
        host = conn.remote_host
        client = f"{_clean(host)} [{conn.remote_ip}]" if host else f"[{conn.remote_ip}]"
        self.session.log(C.LOGNOTICE, " ".join([
            f"connection: client {client}", f"helo {_clean(conn.hello_host or '-')}",
            f"transactions {self.transactions}", f"queued {self.queued}",
            f"refused {self.refused}", f"commands_refused {self.commands_refused}",
            f"end {self.end}", f"duration {time.time() - self.session.started:.2f}s"]))


_counter = itertools.count(1)


def new_session_id():
    """'1796341529-4711-3': start time, pid and a per-process count (the form of
    logging/file's %i); unique on the host, printed on every log line of the session."""
    return f"{int(time.time()):08d}-{os.getpid():04d}-{next(_counter)}"
