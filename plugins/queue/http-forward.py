"""queue/http-forward - POST each message to a web application (a ticket system, an
archive, a mail-to-API bridge) over HTTP or HTTPS; its 2xx answer is the queueing.

Two formats:
  form    (default; the original plugin's) application/x-www-form-urlencoded with
          the fields `mailheader` (the header block, our Received line included) and
          `mailbody` (the body), LF line ends
  rfc822  the raw message as `Content-Type: message/rfc822`, streamed from the spool
Both send the envelope too, as request headers X-Envelope-From (the sender, <> for a
bounce) and X-Envelope-To (one per recipient).

Replies:
  250 Queued! (HTTP 201 Created)             the server answered 2xx
  452 Unable to queue message (HTTP 503 Service Unavailable)   any other answer, a
                                             time-out or a broken connection after the
                                             request was sent (DENYSOFT)
  451 Unable to queue message (<reason>)     the server could not be reached: refused,
                                             DNS, TLS handshake or certificate (DECLINED:
                                             a later queue plugin may still take it)

Arguments:  URL [format form|rfc822] [timeout S] [ca FILE|none] [copy 0|1]
  URL        http:// or https://; user:password@ in it becomes Basic authentication
  format     see above
  timeout S  seconds for the connection and for each read or write, default 30
  ca FILE    certificates to trust for https (default: the system's); `none` turns
             checking off (only for testing)
  copy 1     the original plugin's way: post a copy, then DECLINE so the next queue
             plugin queues the message (list queue/http-forward first). A failed post
             still answers 452, so no message passes without its copy; a later queue
             plugin's 4xx makes the client retry and the copy is posted again.
Hooks: queue.  Examples:
  queue/http-forward https://tickets.example.com/api/mail format rfc822 timeout 10
  queue/http-forward http://127.0.0.1:8080/archive copy 1
  queue/smtp-forward 10.0.0.2

Differences from the original (Pelzer's 1.0): time-outs, HTTPS certificate checks, the
envelope headers, the rfc822 format, and no 250 unless the server answered 2xx.
"""

import base64
import http.client
import ssl
import urllib.parse

from qpsmtpd_py.api import (
    DECLINED, DENYSOFT, LOGERROR, LOGINFO, LOGWARN, OK, Bool, Checked, Choice, Keyword,
    Number, Plugin, Positional, Text,
)


def _check_url(text):
    url = urllib.parse.urlsplit(text)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValueError(f"'{text}' is not an http:// or https:// URL")
    url.port                                # raises ValueError for a bad port
    return text


class NotReached(Exception):
    """Nothing was sent: the server was not reached (a later queue plugin may try)."""


class HTTPForward(Plugin):
    arguments = (
        Positional("URL", Checked(_check_url, "an http:// or https:// URL", "URL"), None,
                   "where to POST", required=True),
        Keyword("format", Choice("form", "rfc822"), "form", "how the message is sent"),
        Keyword("timeout", Number(min=0.1, max=3600, unit="seconds"), 30.0,
                "for connecting and for each read or write"),
        Keyword("ca", Text(), None, "certificates to trust for https, or none"),
        Keyword("copy", Bool(), False, "post a copy and let the next queue plugin queue"),
    )

    def register(self, *args):
        self.url = urllib.parse.urlsplit(self.args["URL"])
        self.format = self.args["format"]
        self.timeout = self.args["timeout"]
        self.copy = self.args["copy"]
        self.context = None
        if self.url.scheme == "https":
            ca = self.args["ca"]
            if ca == "none":
                self.context = ssl._create_unverified_context()
            else:
                self.context = ssl.create_default_context(cafile=ca)
        self.where = f"{self.url.scheme}://{self.url.hostname}:{self.url.port or ''}{self.url.path}"

    def hook_queue(self, transaction):
        try:
            status, reason = self.post(transaction)
        except NotReached as exc:
            self.log(LOGERROR, f"error, {self.where}: {exc}")
            return DECLINED, f"Unable to queue message ({exc})"
        except (OSError, http.client.HTTPException) as exc:
            why = str(exc) or type(exc).__name__
            self.log(LOGERROR, f"error, {self.where} after the request: {why}")
            return DENYSOFT, f"Unable to queue message ({why})"
        if not 200 <= status < 300:
            self.log(LOGWARN, f"fail, {self.where} answered {status} {reason}")
            return DENYSOFT, f"Unable to queue message (HTTP {status} {reason})"
        self.log(LOGINFO, f"pass, {self.where} answered {status} {reason}")
        if self.copy:
            return DECLINED
        return OK, f"Queued! (HTTP {status} {reason})"

    def post(self, transaction):
        url = self.url
        kind = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        extra = {"context": self.context} if url.scheme == "https" else {}
        conn = kind(url.hostname, url.port, timeout=self.timeout, **extra)
        try:
            try:
                conn.connect()
            except (OSError, ssl.SSLError) as exc:
                raise NotReached(getattr(exc, "strerror", None) or getattr(exc, "reason", None)
                                 or str(exc)) from None
            path = url.path or "/"
            if url.query:
                path += "?" + url.query
            conn.putrequest("POST", path)
            for name, value in self.headers(transaction):
                conn.putheader(name, value)
            body, length = self.body(transaction)
            conn.putheader("Content-Length", str(length))
            conn.endheaders()
            for chunk in body:
                conn.send(chunk)
            response = conn.getresponse()
            response.read(1 << 20)
            return response.status, response.reason
        finally:
            conn.close()

    def headers(self, transaction):
        url = self.url
        out = [("User-Agent", "qpsmtpd_py queue/http-forward"),
               ("X-Envelope-From", transaction.sender.format())]
        out += [("X-Envelope-To", rcpt.format()) for rcpt in transaction.recipients]
        if url.username:
            user = urllib.parse.unquote(url.username)
            password = urllib.parse.unquote(url.password or "")
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            out.append(("Authorization", f"Basic {token}"))
        if self.format == "rfc822":
            out.append(("Content-Type", "message/rfc822"))
        else:
            out.append(("Content-Type", "application/x-www-form-urlencoded"))
        return out

    def body(self, transaction):
        """(chunks, length): the raw message streamed, or the form (in memory)."""
        if self.format == "rfc822":
            length = sum(len(chunk) for chunk in transaction.iter_message())
            return transaction.iter_message(), length
        chunks = transaction.iter_message()
        header = next(chunks)[:-1]                # the header block without its blank line
        body = b"".join(chunks)
        form = urllib.parse.urlencode({"mailheader": header, "mailbody": body}).encode()
        return [form], len(form)
