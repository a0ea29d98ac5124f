"""The SMTP session: one method per verb, qpsmtpd's replies, a safe DATA reader.

A session reads a command, runs the plugin chain for it (hooks.py) and turns the
chain's answer into the reply qpsmtpd would give. Differences from qpsmtpd are
deliberate and safe: only CRLF.CRLF ends DATA, command lines are limited to 512
octets, SIZE is enforced at MAIL and while reading, and enhanced status codes are
added after EHLO.
"""

import re
import time

from . import auth
from . import constants as C
from .address import Address
from .channel import ClientGone, ClientTimeout, LineTooLong
from .dns import reverse_name
from .header import Header
from .plugin import Plugin
from .transaction import Transaction

COMMAND_LINE_LIMIT = 512
_VERB = re.compile(r"^\w{1,12}$")
_FIELD = re.compile(rb"^[!-9;-~]+[ \t]*:")
_ENHANCED = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}(?: |$)")
_HASH_ENHANCED = re.compile(r"#([245]\.\d{1,3}\.\d{1,3})")
_PARAM_AT_END = re.compile(r"\s+([A-Za-z0-9][A-Za-z0-9\-]*(?:=[^= \x00-\x1f]+)?)$", re.ASCII)
_AT_THEN_SPACE = re.compile(r"@.*\s", re.ASCII)
_ENVELOPE_KEYWORD = {kw: re.compile(kw + r":\s*", re.I | re.ASCII) for kw in ("from", "to")}

# Enhanced status codes (RFC 3463) used when a reply carries none of its own.
_ENH_BY_VERB = {
    ("mail", 250): "2.1.0", ("rcpt", 250): "2.1.5", ("rcpt", 251): "2.1.5",
    ("mail", 550): "5.7.1", ("mail", 450): "4.7.1", ("mail", 421): "4.7.1",
    ("rcpt", 550): "5.7.1", ("rcpt", 450): "4.7.1", ("rcpt", 421): "4.7.1",
    ("data", 554): "5.7.1", ("data", 451): "4.7.1", ("vrfy", 554): "5.7.1",
    ("vrfy", 250): "2.1.5", ("vrfy", 252): "2.5.0", ("auth", 535): "5.7.8",
}
_ENH_BY_CODE = {
    500: "5.5.1", 501: "5.5.4", 502: "5.5.1", 503: "5.5.1", 504: "5.5.4", 521: "5.7.1",
    550: "5.7.1", 552: "5.3.4", 553: "5.1.3", 554: "5.6.0", 421: "4.4.2", 450: "4.7.1",
    451: "4.3.0", 452: "4.3.1", 235: "2.7.0", 530: "5.7.0", 535: "5.7.8", 538: "5.7.11",
}


class Disconnect(Exception):
    """Raised to end the session after the reply has been queued."""


def reply_lines(messages):
    """Reply messages -> text lines: a message with newlines becomes several lines."""
    return [line for message in messages for line in str(message).split("\n")] or [""]


def format_reply(code, lines):
    """The wire form of a reply: `250-first`, ..., `250 last`, CRLF line ends."""
    last = len(lines) - 1
    text = "".join(f"{code}{' ' if i == last else '-'}{line}\r\n" for i, line in enumerate(lines))
    return text.encode("utf-8", "surrogateescape")


def split_envelope(text, verb):
    """The argument of MAIL FROM: / RCPT TO: (after the colon) -> (path, {param: value})
    or (None, error text), as qpsmtpd's Qpsmtpd::Command does it: ESMTP parameters
    KEY[=VALUE] are peeled off the right-hand end; what is left is the path, which
    must not have white space after an @. 'MAIL FROM:' alone is the null sender."""
    line = text.rstrip()
    words = []
    while True:
        match = _PARAM_AT_END.search(line)
        if not match:
            break
        words.insert(0, match.group(1))
        line = line[:match.start()]
    if not line:
        if verb != "mail":
            return None, "Syntax error in address"
        line = "<>"
    elif _AT_THEN_SPACE.search(line):
        return None, "Syntax error in parameters"
    params = {}
    for word in words:
        key, eq, value = word.partition("=")
        params[key.lower()] = value if eq else None
    return line, params


class SMTPSession:
    """One client connection, from greeting to disconnect."""

    def __init__(self, app, channel, connection):
        self.app = app
        self.channel = channel
        self.connection = connection
        self.transaction = None
        self.esmtp = False
        self.smtputf8_ok = True
        self.disconnected = False
        self.tls_failed = False
        self.auth_offered = False
        self.auth = auth.handler_for(self)   # AUTH command handler; None without auth hooks
        self.started = time.time()
        self.commands = {
            "helo": self.cmd_helo, "ehlo": self.cmd_ehlo, "mail": self.cmd_mail,
            "rcpt": self.cmd_rcpt, "data": self.cmd_data, "rset": self.cmd_rset,
            "noop": self.cmd_noop, "vrfy": self.cmd_vrfy, "help": self.cmd_help,
            "quit": self.cmd_quit,
        }
        self.verb = ""

    # -- conveniences for plugins ---------------------------------------------------
    @property
    def me(self):
        return self.app.me

    def config(self, name, default=None):
        return self.app.config.get(name, default)

    def log(self, level, msg):
        self.app.log(level, msg, hook=self.verb or None)

    def run_hooks(self, hook, *args):
        hooks = self.app.hooks
        if not hooks.registry[hook]:            # most hooks have no plugin: skip the call
            return C.DECLINED, [], None
        return hooks.run(hook, self.transaction, *args)

    # -- replies ------------------------------------------------------------------------
    def respond(self, code, *messages, enhanced=None):
        """Queue a (multi-line) reply; messages may contain newlines."""
        lines = reply_lines(messages)
        if self.esmtp and code >= 200 and code // 100 != 3 and self.verb != "ehlo":
            enh = enhanced or self._enhanced_code(code, lines)
            lines = [line if _ENHANCED.match(line) else (f"{enh} {line}" if line else enh)
                     for line in lines]
        self.channel.write(format_reply(code, lines))
        return True

    def _enhanced_code(self, code, lines):
        for line in lines:
            match = _HASH_ENHANCED.search(line)
            if match and match.group(1)[0] == str(code)[0]:
                return match.group(1)
        enh = _ENH_BY_VERB.get((self.verb, code)) or _ENH_BY_CODE.get(code)
        return enh or f"{code // 100}.0.0"

    def disconnect(self):
        """Run the disconnect hooks once and end the session."""
        if not self.disconnected:
            self.disconnected = True
            self.connection.notes["disconnected"] = True
            self.run_hooks("disconnect")
            self.reset_transaction(new=False)
        raise Disconnect()

    def respond_and_disconnect(self, code, *messages):
        self.respond(code, *messages)
        self.disconnect()

    # -- transactions ----------------------------------------------------------------------
    def reset_transaction(self, new=True):
        if self.transaction is not None:
            self.run_hooks("reset_transaction")
            self.transaction.close()
        self.transaction = Transaction(self.app.spool_dir, self.app.size_threshold) if new else None
        return self.transaction

    def ensure_transaction(self):
        return self.transaction or self.reset_transaction()

    # -- the session -------------------------------------------------------------------------
    def run(self):
        """Greet, then answer commands until QUIT, a disconnect, EOF or a time-out."""
        self.app.session = self
        Plugin.qp = self
        try:
            try:
                self.start()
                while True:
                    self.read_and_dispatch()
            except Disconnect:
                pass
            except ClientTimeout:
                self.log(C.LOGINFO, "timeout: client sent nothing for "
                         f"{self.channel.timeout} seconds")
                self.verb = ""      # not a reply to the last command (EHLO has no codes)
                self.respond(421, f"4.4.2 {self.me} Error: timeout exceeded")
                self._end_quietly()
            except ClientGone as exc:
                self.log(C.LOGINFO, f"client went away: {exc}")
                self._end_quietly()
            try:
                self.channel.flush()
            except ClientGone:
                pass
        finally:
            self.log(C.LOGINFO, f"session with [{self.connection.remote_ip}] ended after "
                     f"{time.time() - self.started:.2f}s")
            self.run_hooks("post-connection")
            if self.transaction is not None:
                self.transaction.close()
                self.transaction = None
            self.channel.close()
            self.app.session = None
            Plugin.qp = None

    def _end_quietly(self):
        try:
            self.disconnect()
        except Disconnect:
            pass

    def start(self):
        """TLS first on SMTPS listeners, then the connect hooks and the greeting."""
        if self.connection.smtps:
            tls = getattr(self.app, "tls", None)
            if tls is None:
                self.log(C.LOGERROR, "SMTPS listener but no tls plugin loaded; closing")
                self.disconnect()
            try:
                tls.wrap_session(self, implicit=True)
            except Exception as exc:
                self.log(C.LOGWARN, f"TLS handshake failed on SMTPS listener: {exc}")
                self.disconnect()
        self._lookup_remote_host()
        conn = self.connection
        self.log(C.LOGINFO, f"connect from {conn.remote_display} [{conn.remote_ip}]:{conn.remote_port}"
                 f" to {conn.local_ip}:{conn.local_port}")
        code, msgs, _ = self.run_hooks("connect")
        if code in (C.DENY, C.DENY_DISCONNECT):
            self.respond_and_disconnect(550, *(msgs or ["Connection from you denied, bye bye."]))
        if code in (C.DENYSOFT, C.DENYSOFT_DISCONNECT):
            self.respond_and_disconnect(450, *(msgs or ["Connection from you temporarily denied, bye bye."]))
        if code == C.DONE:
            return
        greeting = self.config("smtpgreeting")
        if greeting:
            if not re.search(r"(^|\W)ESMTP(\W|$)", greeting):
                greeting += " ESMTP"
        else:
            greeting = (f"{self.me} ESMTP qpsmtpd_py {self.app.version} ready; "
                        "send us your mail, but not your spam.")
        self.respond(220, greeting)

    def _lookup_remote_host(self):
        """PTR name of the client (as qpsmtpd does), unless -H / app.rdns is off."""
        conn = self.connection
        if conn.remote_host is None and getattr(self.app, "rdns", True) and conn.remote_ip:
            conn.remote_host = reverse_name(self.app, conn.remote_ip)

    def read_and_dispatch(self):
        try:
            raw = self.channel.readline(COMMAND_LINE_LIMIT)
        except LineTooLong:
            self.verb = ""
            self.log(C.LOGNOTICE, f"command line longer than {COMMAND_LINE_LIMIT} octets refused")
            self.respond(500, "5.5.2 Line too long")
            return
        line = raw.rstrip(b"\r\n")
        if b"\0" in line:
            self.verb = ""
            self.log(C.LOGNOTICE, "command with a NUL byte refused")
            self.respond(500, "5.5.2 Syntax error, NUL byte in command")
            return
        text = line.decode("utf-8", "surrogateescape")
        self.dispatch(text)

    def dispatch(self, text):
        self.connection.notes["original_string"] = text
        parts = text.split(" ", 1)
        verb = parts[0].lower()
        rest = parts[1].strip() if len(parts) > 1 else ""
        self.verb = verb
        if self.app.on_command is not None:     # server hook: process title, heartbeat
            self.app.on_command(self)
        if self.app.loglevel >= C.LOGDEBUG:
            shown = text if verb != "auth" else "AUTH " + rest.split(" ", 1)[0] + " (credentials hidden)"
            self.log(C.LOGDEBUG, f"dispatching {shown}")
        handler = self.commands.get(verb) if _VERB.match(verb) else None
        if handler is None and verb == "auth" and self.auth_offered and self.auth is not None:
            handler = self.auth.cmd_auth
        if handler is None:
            return self.cmd_unrecognized(verb, rest)
        handler(rest)

    # -- commands ---------------------------------------------------------------------------
    def cmd_unrecognized(self, verb, rest):
        code, msgs, _ = self.run_hooks("unrecognized_command", verb, rest)
        if code == C.DONE:
            return
        if code == C.DENY:
            self.respond(500, *(msgs or ["Unrecognized command"]))
        elif code == C.DENY_DISCONNECT:
            self.respond_and_disconnect(521, *(msgs or ["Unrecognized command"]))
        elif code == C.DENYSOFT_DISCONNECT:
            self.respond_and_disconnect(421, *(msgs or ["Unrecognized command"]))
        elif code == C.DENYSOFT:
            self.respond(451, *(msgs or ["Unrecognized command"]))
        else:
            self.log(C.LOGINFO, f"unrecognized command: {verb[:32]!r}")
            self.respond(500, "Unrecognized command")

    def _refused_for_tls(self):
        if self.tls_failed:
            self.respond(550, "Command refused due to lack of security")
            return True
        return False

    def cmd_helo(self, rest):
        self._hello("helo", rest)

    def cmd_ehlo(self, rest):
        self._hello("ehlo", rest)

    def _hello(self, kind, rest):
        if self._refused_for_tls():
            return
        host = rest.split()[0] if rest.split() else ""
        if not host:
            return self.respond(501, f"{kind} requires domain/address - see RFC-2821 4.1.1.1")
        if self.connection.hello:
            return self.respond(503, "but you already said HELO ...")
        self.ensure_transaction()
        code, msgs, _ = self.run_hooks(kind, host, *rest.split()[1:])
        if code == C.DONE:
            return
        if code in C.DENY_CODES:
            reply = 450 if C.is_soft(code) else 550
            self.respond(reply, *(msgs or [f"{kind.upper()} {host} refused"]))
            if C.is_disconnect(code):
                self.disconnect()
            return
        self.connection.hello = kind
        self.connection.hello_host = host
        greeting = f"{self.me} Hi {self.connection.remote_display} [{self.connection.remote_ip}]"
        if kind == "helo":
            self.esmtp = False
            return self.respond(250, f"{greeting}; I am so happy to meet you.")
        self.esmtp = True
        lines = [greeting, "PIPELINING", "8BITMIME"]
        if self.app.databytes:
            lines.append(f"SIZE {self.app.databytes}")
        lines += ["ENHANCEDSTATUSCODES", "SMTPUTF8"]
        lines += list(self.transaction.notes.get("capabilities") or [])
        if self.auth is not None:
            mechanisms = self.auth.offered_mechanisms()
            self.auth_offered = bool(mechanisms)
            if mechanisms:
                lines.append("AUTH " + " ".join(mechanisms))
        self.respond(250, *lines)

    def _parse_envelope(self, rest, keyword, pre_hook, check=None):
        """Split 'FROM:<a@b> PARAMS'; returns (path_text, params) or replies and None.
        check() runs between the syntax check and the pre hook (RCPT: MAIL first?)."""
        match = _ENVELOPE_KEYWORD[keyword].match(rest)
        if not match:
            self.respond(501, "Syntax error in command")
            return None
        path, params = split_envelope(rest[match.end():], "mail" if keyword == "from" else "rcpt")
        if path is None:
            self.respond(501, params)
            return None
        if check is not None and not check():
            return None
        code, msgs, _ = self.run_hooks(pre_hook, path, params)
        if code == C.OK and msgs:
            path = msgs[0]
        elif code == C.DONE:        # the plugin answered (parse_addr_withhelo: 501)
            return None
        elif code in C.DENY_CODES:
            self.respond(450 if C.is_soft(code) else 550, *(msgs or ["Address refused"]))
            if C.is_disconnect(code):
                self.disconnect()
            return None
        return path, params

    def _utf8_allowed(self, address, params):
        if not address.has_utf8:
            return True
        return self.esmtp and "smtputf8" in (self.transaction.notes.get("mail_params") or params)

    def cmd_mail(self, rest):
        if self._refused_for_tls():
            return
        if not self.connection.hello:
            return self.respond(503, "please say hello first ...")
        self.reset_transaction()
        parsed = self._parse_envelope(rest, "from", "mail_pre")
        if parsed is None:
            return
        path, params = parsed
        if path == "":
            path = "<>"
        sender = Address.parse(path) if path.startswith("<") else None
        if sender is None or _has_surrogate(path):
            self.log(C.LOGINFO, f"could not parse sender: {path[:100]!r}")
            return self.respond(501, "could not parse your mail from command")
        if sender.host is None and not sender.is_null and sender.user != "postmaster":
            return self.respond(501, "could not parse your mail from command")
        if not self._utf8_allowed(sender, params):
            return self.respond(553, "Non-ASCII address needs SMTPUTF8 (RFC 6531)", enhanced="5.6.7")
        if not self._check_size_param(params) or not self._check_body_param(params):
            return
        self.transaction.notes["mail_params"] = params
        code, msgs, _ = self.run_hooks("mail", sender, params)
        if code == C.DONE:
            return
        if code == C.DENY:
            return self.respond(550, *(msgs or [f"{sender}, denied"]))
        if code == C.DENYSOFT:
            return self.respond(450, *(msgs or [f"{sender}, temporarily denied"]))
        if code == C.DENY_DISCONNECT:
            return self.respond_and_disconnect(550, *(msgs or [f"{sender}, denied"]))
        if code == C.DENYSOFT_DISCONNECT:
            return self.respond_and_disconnect(421, *(msgs or [f"{sender}, temporarily denied"]))
        self.transaction.sender = sender
        self.log(C.LOGINFO, f"sender {sender} accepted")
        self.respond(250, f"{sender}, sender OK - how exciting to get mail from you!")

    def _check_size_param(self, params):
        if "size" not in params:
            return True
        size = params["size"]
        if not size or not size.isdigit():
            self.respond(501, "Syntax error in parameters: SIZE needs a number", enhanced="5.5.4")
            return False
        if self.app.databytes and int(size) > self.app.databytes:
            self.log(C.LOGINFO, f"declared SIZE {size} exceeds databytes {self.app.databytes}")
            self.respond(552, "Message size exceeds fixed maximum message size", enhanced="5.3.4")
            return False
        return True

    def _check_body_param(self, params):
        body = params.get("body")
        if body is not None and body.upper() not in ("7BIT", "8BITMIME"):
            self.respond(501, "Syntax error in parameters: BODY must be 7BIT or 8BITMIME",
                         enhanced="5.5.4")
            return False
        return True

    def cmd_rcpt(self, rest):
        if self._refused_for_tls():
            return
        parsed = self._parse_envelope(rest, "to", "rcpt_pre", check=self._have_sender)
        if parsed is None:
            return
        path, params = parsed
        rcpt = Address.parse(path) if path.startswith("<") else None
        if (rcpt is None or rcpt.is_null or _has_surrogate(path)
                or (rcpt.host is None and rcpt.user.lower() != "postmaster")):
            self.log(C.LOGINFO, f"could not parse recipient: {path[:100]!r}")
            return self.respond(501, "could not parse recipient")
        if not self._utf8_allowed(rcpt, params):
            return self.respond(553, "Non-ASCII address needs SMTPUTF8 (RFC 6531)", enhanced="5.6.7")
        code, msgs, _ = self.run_hooks("rcpt", rcpt, params)
        if code == C.DONE:
            return
        if code == C.OK:
            self.transaction.add_recipient(rcpt)
            self.log(C.LOGINFO, f"recipient {rcpt} accepted")
            return self.respond(250, f"{rcpt}, recipient ok")
        if code == C.DENY:
            self.log(C.LOGINFO, f"recipient {rcpt} refused: {' '.join(msgs) or 'relaying denied'}")
            return self.respond(550, *(msgs or ["relaying denied"]))
        if code == C.DENYSOFT:
            return self.respond(450, *(msgs or ["relaying denied"]))
        if code == C.DENY_DISCONNECT:
            return self.respond_and_disconnect(550, *(msgs or ["delivery denied"]))
        if code == C.DENYSOFT_DISCONNECT:
            return self.respond_and_disconnect(421, *(msgs or ["relaying denied"]))
        self.log(C.LOGINFO, f"recipient {rcpt}: no plugin decided")
        self.respond(450, "No plugin decided if relaying is allowed")

    def _have_sender(self):
        """RCPT after the syntax check, before rcpt_pre (qpsmtpd's order): MAIL first."""
        if self.transaction is None or self.transaction.sender is None:
            self.respond(503, "Use MAIL before RCPT")
            return False
        return True

    def cmd_rset(self, rest):
        self.reset_transaction()
        self.respond(250, "OK")

    def cmd_noop(self, rest):
        code, msgs, _ = self.run_hooks("noop")
        if code == C.DONE:
            return
        if code == C.DENY:
            return self.respond(500, *(msgs or ["Stop wasting my time."]))
        if code == C.DENY_DISCONNECT:
            return self.respond_and_disconnect(500, *(msgs or ["Stop wasting my time."]))
        self.respond(250, "OK")

    def cmd_vrfy(self, rest):
        code, msgs, _ = self.run_hooks("vrfy")
        if code == C.DONE:
            return
        if code == C.OK:
            return self.respond(250, *(msgs or ["User OK"]))
        if code in C.DENY_CODES:
            self.respond(554, *(msgs or ["Access Denied"]))
            self.reset_transaction()
            if C.is_disconnect(code):
                self.disconnect()
            return
        self.respond(252, "Just try sending a mail and we'll see how it turns out ...")

    def cmd_help(self, rest):
        code, msgs, _ = self.run_hooks("help", rest)
        if code == C.DONE:
            return
        if code in C.DENY_CODES:
            return self.respond(500, *(msgs or ["Syntax error, command not recognized"]))
        if code == C.OK and msgs:
            return self.respond(214, *msgs)
        version = "" if self.config("smtpgreeting") else f" {self.app.version}"
        self.respond(214, f"This is qpsmtpd_py{version}", "See http://smtpd.develooper.com/",
                     "To report bugs or send comments, mail to <ask@develooper.com>.")

    def cmd_quit(self, rest):
        code, msgs, _ = self.run_hooks("quit")
        if code != C.DONE:
            self.respond(221, f"{self.me} closing connection. Have a wonderful day.")
        self.disconnect()

    # -- DATA --------------------------------------------------------------------------------
    def cmd_data(self, rest):
        if self._refused_for_tls():
            return
        self.ensure_transaction()
        code, msgs, _ = self.run_hooks("data")
        if code == C.DONE:
            return
        if code == C.DENY:
            self.respond(554, *(msgs or ["Message denied"]))
            return self.reset_transaction()
        if code == C.DENYSOFT:
            self.respond(451, *(msgs or ["Message denied temporarily"]))
            return self.reset_transaction()
        if code == C.DENY_DISCONNECT:
            return self.respond_and_disconnect(554, *(msgs or ["Message denied"]))
        if code == C.DENYSOFT_DISCONNECT:
            return self.respond_and_disconnect(421, *(msgs or ["Message denied temporarily"]))
        if self.transaction.sender is None:
            return self.respond(503, "MAIL first")
        if not self.transaction.recipients:
            return self.respond(503, "RCPT first")
        self.respond(354, "go ahead")
        problem = DataReader(self).read()
        if problem is not None:
            code, text, enhanced = problem
            self.respond(code, text, enhanced=enhanced)
            return self.reset_transaction()
        self.finish_message()

    def finish_message(self):
        """Add trace headers, run data_post, queue, and answer."""
        txn = self.transaction
        self.run_hooks("data_post_headers")
        self._add_authentication_results(txn)
        self._add_received(txn)
        code, msgs, _ = self.run_hooks("data_post")
        if code == C.DONE:
            return self.reset_transaction()
        if code in C.DENY_CODES:
            soft = C.is_soft(code)
            self.log(C.LOGINFO, f"message refused after DATA: {' '.join(msgs)}")
            self.respond(452 if soft else 552,
                         *(msgs or ["Message denied temporarily" if soft else "Message denied"]))
            if C.is_disconnect(code):
                self.disconnect()
            return self.reset_transaction()
        self.queue_message()

    def queue_message(self):
        code, msgs, _ = self.run_hooks("queue_pre")
        if code == C.DONE:
            return self.reset_transaction()
        if code in C.DENY_CODES:
            self.respond(452 if C.is_soft(code) else 552, *(msgs or ["Message denied"]))
            return self.reset_transaction()
        code, msgs, plugin = self.run_hooks("queue")
        if code == C.OK:
            self.respond(250, *(msgs or ["Queued"]), enhanced="2.0.0")
            self.log(C.LOGINFO, f"queued by {plugin.plugin_name if plugin else '?'}: {' '.join(msgs)}")
        elif code == C.DONE:
            pass
        elif code in (C.DENY, C.DENY_DISCONNECT):
            self.respond(552, *(msgs or ["Message denied"]))
        elif code in (C.DENYSOFT, C.DENYSOFT_DISCONNECT):
            self.respond(452, *(msgs or ["Message denied temporarily"]))
        else:
            self.log(C.LOGWARN, "no queue plugin accepted the message")
            self.respond(451, *(msgs or ["Queuing declined or disabled; try again later"]))
        self.run_hooks("queue_post")
        self.reset_transaction()
        if C.is_disconnect(code):
            self.disconnect()

    def _protocol_word(self):
        word = "ESMTP" if self.connection.hello == "ehlo" else "SMTP"
        if word == "ESMTP":
            if self.connection.tls:
                word += "S"
            if self.connection.auth_user:
                word += "A"
        return word

    def _add_received(self, txn):
        conn = self.connection
        word = self._protocol_word()
        tls = ""
        if conn.tls:
            tls = f"({conn.tls.get('version', 'TLS')} {conn.tls.get('cipher', '')} encrypted) "
        code, lines, _ = self.run_hooks("received_line", word, "", tls)
        if code == C.OK and lines:
            value = "\n".join(lines)
        else:
            date = time.strftime("%a, %d %b %Y %H:%M:%S %z", time.localtime())
            value = (f"from {conn.remote_display} (HELO {conn.hello_host}) ({conn.remote_ip})\n"
                     f" by {self.me} (qpsmtpd_py/{self.app.version}) with {tls}{word}; {date}")
        txn.header.add("Received", value, prepend=True)

    def _add_authentication_results(self, txn):
        server_id = self.config("me-auth-results") or self.me
        if server_id.lower() == "none":
            return
        conn = self.connection
        if conn.auth_user:
            parts = [f"auth=pass ({conn.auth_mechanism.lower()})"]
            if self.app.config.get_bool("auth_results_user"):
                parts[0] += f" smtp.auth={conn.auth_user}"
        else:
            parts = ["auth=none"]
        parts += list(conn.notes.get("authentication_results") or [])
        parts += list(txn.notes.get("authentication_results") or [])
        txn.header.add("Authentication-Results", f"{server_id}; " + "; ".join(parts), prepend=True)


def _has_surrogate(text):
    """Bytes that were not valid UTF-8 decode to lone surrogates."""
    return not text.isascii() and any("\udc80" <= ch <= "\udcff" for ch in text)


def _head(buffer, size):
    """The first `size` bytes of a bytearray as bytes, copied once."""
    with memoryview(buffer) as view:
        return bytes(view[:size])


class DataReader:
    """Reads a message body up to CRLF.CRLF without keeping it all in memory.

    Checks, in bulk per chunk: bare CR or LF (refused or normalised), lines over
    the DATA line limit, and databytes. The whole body is always read to its real
    end, so a refused message never leaves junk that would be read as commands.
    """

    def __init__(self, session):
        self.session = session
        self.app = session.app
        self.txn = session.transaction
        self.limit = self.app.databytes
        self.line_limit = self.app.data_line_limit
        self.normalize = self.app.bare_newlines in ("normalize", "normalise")
        self.size = 0
        self.too_big = False
        self.bare = False
        self.long_line = False
        self.header_done = False
        self.header_buf = bytearray()
        self.scan_pos = 0           # where scan_header stopped in header_buf
        self.seen_field = False

    def read(self):
        """Returns None when the message is complete and acceptable, else
        (code, text, enhanced) for the reply."""
        channel = self.session.channel
        pending = channel.buffer
        channel.buffer = bytearray()
        mid_line = False
        while True:
            if not mid_line and pending.startswith(b".\r\n"):
                channel.buffer = pending[3:]
                break
            end = pending.find(b"\r\n.\r\n")
            if end >= 0:
                self.process(_head(pending, end + 2), mid_line)
                channel.buffer = pending[end + 5:]
                break
            last = pending.rfind(b"\r\n")
            if last >= 0:
                self.process(_head(pending, last + 2), mid_line)
                del pending[:last + 2]
                mid_line = False
            elif len(pending) > 65536:
                # one enormous line: it can never be accepted; keep its last byte (a CR?)
                self.long_line = True
                self.process(pending[:-1], mid_line)
                del pending[:-1]
                mid_line = True
            pending += channel.read_chunk()
        self.finish_header()
        return self.verdict()

    def verdict(self):
        if self.bare and not self.normalize:
            self.session.log(C.LOGNOTICE, "message refused: bare CR or LF line ending (SMTP smuggling defence)")
            return (554, "Message refused: bare CR or LF line ending; lines must end in CRLF "
                    "(RFC 5321 2.3.8)", "5.6.0")
        if self.long_line:
            self.session.log(C.LOGNOTICE, f"message refused: line longer than {self.line_limit} octets")
            return (554, f"Message refused: line longer than {self.line_limit} octets "
                    "(RFC 5321 4.5.3.1.6)", "5.6.0")
        if self.too_big:
            self.session.log(C.LOGNOTICE, f"message refused: over databytes ({self.limit})")
            return (552, "Message too big!", "5.3.4")
        return None

    def process(self, content, mid_line):
        """Handle complete CRLF-terminated lines (content starts at a line start
        unless mid_line)."""
        if not content or (self.bare and not self.normalize):
            return                      # refused for bare CR/LF whatever else follows
        lines = content.split(b"\r\n")
        lf = None                       # content with CRLF -> LF, while no bare CR/LF seen
        if not self.bare:
            lf = b"\n".join(lines)     # one pass; faster than replace()
            if b"\r" in lf or lf.count(b"\n") != len(lines) - 1:
                self.bare = True
                lf = None
                if not self.normalize:
                    return
        if self.line_limit and len(content) > self.line_limit - 2:
            if max(map(len, lines)) > self.line_limit - 2:
                self.long_line = True
        if self.long_line or self.too_big or (self.bare and not self.normalize):
            return
        if lf is not None:              # every LF came from a CRLF: unstuff after LF
            data = lf[1:] if not mid_line and lf.startswith(b".") else lf
            data = data.replace(b"\n.", b"\n")
        else:
            data = bytes(content)
            if not mid_line and data.startswith(b"."):
                data = data[1:]
            data = data.replace(b"\r\n.", b"\r\n").replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        self.size += len(data)
        if self.limit and self.size > self.limit:
            self.too_big = True
            return
        if self.header_done:
            self.txn.body_write(data)
        else:
            self.header_buf += data
            self.scan_header()

    def scan_header(self):
        """Split the header block off as soon as it ends: at the blank line, or at
        the first line that is neither a field nor a continuation (kept as body)."""
        buf = self.header_buf
        pos = self.scan_pos
        while True:
            nl = buf.find(b"\n", pos)
            if nl < 0:
                break
            line = buf[pos:nl]
            if not line:
                self._end_header(pos, nl + 1)
                return
            if not (line[:1] in (b" ", b"\t") and self.seen_field) and not _FIELD.match(line):
                self._end_header(pos, pos)
                return
            self.seen_field = True
            pos = nl + 1
        self.scan_pos = pos

    def _end_header(self, header_end, body_start):
        text = bytes(self.header_buf[:header_end]).decode("utf-8", "surrogateescape")
        self.txn.header = Header.parse(text)
        body = bytes(self.header_buf[body_start:])
        self.header_buf = bytearray()
        self.header_done = True
        if body:
            self.txn.body_write(body)
        session = self.session
        code, msgs, _ = session.run_hooks("data_headers_end")
        if code == C.DENY_DISCONNECT:
            session.respond_and_disconnect(554, *(msgs or ["Message denied"]))
        if code == C.DENYSOFT_DISCONNECT:
            session.respond_and_disconnect(421, *(msgs or ["Message denied temporarily"]))

    def finish_header(self):
        if not self.header_done:
            buf = bytes(self.header_buf)
            self.header_buf = bytearray()
            self.txn.header = Header.parse(buf.decode("utf-8", "surrogateescape"))
            self.header_done = True
        if self.txn.header is None:
            self.txn.header = Header()
        self.txn.data_size = self.size

