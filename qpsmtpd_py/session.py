"""The SMTP session: greeting, one method per verb, qpsmtpd's replies.

A session reads a command, runs the plugin chain for it (hooks.py) and answers
from the reply table there (hooks.REPLIES). Envelope parsing (envelope.py), the
DATA reader (data_reader.py) and trace headers (trace.py) live in their own
modules. Differences from qpsmtpd are deliberate and safe: only CRLF.CRLF ends
DATA, command lines are limited to 512 octets, SIZE is enforced at MAIL and while
reading, and enhanced status codes are added after EHLO.
"""

import re
import time

from . import auth, envelope, limits, metrics, trace
from . import constants as C
from .channel import LineTooLong
from .data_reader import DataReader
from .errors import ClientGone, ClientTimeout, Disconnect
from .hooks import reply_for
from .plugin import CURRENT
from .replies import format_reply, reply_lines, with_enhanced
from .summary import Summary, new_session_id
from .transaction import Transaction

COMMAND_LINE_LIMIT = 512
_VERB = re.compile(r"^\w{1,12}$")
_reverse_name = None        # helpers.dns.reverse_name, imported at the first PTR lookup


def greeting_text(app):
    """The 220 greeting's text (config smtpgreeting, which must say ESMTP), also
    sent by the prefork front process for the clients it holds."""
    greeting = app.config.get("smtpgreeting")
    if greeting:
        if not re.search(r"(^|\W)ESMTP(\W|$)", greeting):
            greeting += " ESMTP"
        return greeting
    return f"{app.me} ESMTP qpsmtpd_py {app.version} ready; send us your mail, but not your spam."


class SMTPSession:
    """One client connection, from greeting to disconnect."""

    def __init__(self, app, channel, connection):
        self.app = app
        self.channel = channel
        self.connection = connection
        self.transaction = None
        self.esmtp = False
        self.disconnected = False
        self.tls_failed = False
        self.auth_offered = False
        self.auth = auth.handler_for(self)   # AUTH command handler; None without auth hooks
        self.capabilities = []               # extra keywords of the current EHLO reply
        self.started = time.time()
        self.commands = {
            "helo": self.cmd_helo, "ehlo": self.cmd_ehlo, "mail": self.cmd_mail,
            "rcpt": self.cmd_rcpt, "data": self.cmd_data, "rset": self.cmd_rset,
            "noop": self.cmd_noop, "vrfy": self.cmd_vrfy, "help": self.cmd_help,
            "quit": self.cmd_quit,
        }
        self.verb = ""
        if connection.id is None:
            connection.id = new_session_id()
        self.decided_by = None               # plugin of the last hook chain that answered
        self.timed_hooks = metrics.SINK is not None     # qpsmtpd_hook_seconds (metrics on)
        self.summary = Summary(self)         # the LOGNOTICE lines: refusals, summaries
        self.limits = limits.policy(app)     # time-outs, junk and error limits, stress
        channel.limits = self.limits
        self.began = app.clock.monotonic()
        self.junk = 0                        # NOOP, RSET ... since the last delivery
        self.errors = 0                      # unknown commands, junk past its limit

    # -- conveniences for plugins ---------------------------------------------------
    @property
    def me(self):
        return self.app.me

    def config(self, name, default=None):
        return self.app.config.get(name, default)

    def log(self, level, msg):
        self.app.log(level, msg, hook=self.verb or None)

    def run_hooks(self, hook, *args):
        """The chain of `hook` -> (code, messages, plugin); decided_by is that plugin."""
        hooks = self.app.hooks
        if not hooks.registry[hook]:            # most hooks have no plugin: skip the call
            self.decided_by = None
            return C.DECLINED, [], None
        if self.timed_hooks:
            started = time.monotonic()
            result = hooks.run(hook, self.transaction, *args)
            metrics.observe("qpsmtpd_hook_seconds", time.monotonic() - started, {"hook": hook})
        else:
            result = hooks.run(hook, self.transaction, *args)
        self.decided_by = result[2]
        return result

    # -- replies ------------------------------------------------------------------------
    def respond(self, code, *messages, enhanced=None):
        """Queue a (multi-line) reply; messages may contain newlines."""
        lines = reply_lines(messages)
        if self.esmtp and code >= 200 and code // 100 != 3 and self.verb != "ehlo":
            lines = with_enhanced(self.verb, code, lines, enhanced)
        self.summary.reply(code, lines)
        self.channel.write(format_reply(code, lines))
        return True

    def answer(self, hook, code, msgs, reset=False, **fields):
        """Reply to a hook's result from the reply table; True if it answered.
        Disconnect codes end the session after the reply; otherwise `reset`
        ends the mail transaction."""
        entry = reply_for(hook, code)
        if entry is None:
            return False
        smtp_code, default, disconnect = entry
        self.respond(smtp_code, *(msgs or [default.format(**fields)]))
        if disconnect:
            self.disconnect()
        if reset:
            self.reset_transaction()
        return True

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

    def add_capability(self, keyword):
        """An extra keyword for the EHLO reply being built (Plugin.add_capability)."""
        keyword = str(keyword).strip()
        if not keyword or not keyword.isascii() or not keyword.isprintable():
            raise ValueError(f"bad EHLO keyword {keyword!r}")
        if keyword not in self.capabilities:
            self.capabilities.append(keyword)

    def plugin_parse(self, verb, line, *hook_args):
        """The arguments of `verb` as a plugin's <verb>_parse parser reads them
        (qpsmtpd's parse hooks): None when no plugin offers a parser (the core
        parses), the list of values, or False after answering 501 (the parser
        refused the line) or 451 (it crashed)."""
        hook = verb + "_parse"
        if not self.app.hooks.has(hook):
            return None
        result = self.app.hooks.run_parser(hook, self.transaction, verb, line, *hook_args)
        if result is None:
            return None
        ok, values = result
        if ok:
            return values
        self.respond(501 if ok is False else 451, *(values or ["Syntax error in command"]))
        return False

    # -- transactions ----------------------------------------------------------------------
    def reset_transaction(self, new=True):
        self.summary.end_transaction(self.transaction)
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
        CURRENT.session = self            # what plugins' self.qp is
        try:
            try:
                self.start()
                while True:
                    self.read_and_dispatch()
            except Disconnect:
                pass
            except ClientTimeout as exc:
                why = str(exc) or f"sent nothing for {self.channel.timeout} seconds"
                self.log(C.LOGINFO, f"timeout: client {why}")
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
            self.summary.end_transaction(self.transaction)
            self.summary.end_session()
            self.run_hooks("post-connection")
            if self.transaction is not None:
                self.transaction.close()
                self.transaction = None
            self.channel.close()
            self.app.session = None
            CURRENT.session = None

    def _end_quietly(self):
        try:
            self.disconnect()
        except Disconnect:
            pass
        except ClientGone:          # a disconnect hook's write to a closed socket
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
        code, msgs, _ = self.run_hooks("connect")
        # logged after the connect hooks: reading the name waits for the PTR answer,
        # and the hooks' own DNS lookups should be in flight by then
        self.log(C.LOGINFO, f"connect from {conn.remote_display} [{conn.remote_ip}]:{conn.remote_port}"
                 f" to {conn.local_ip}:{conn.local_port}")
        if self.answer("connect", code, msgs):
            self.disconnect()       # a refused connection ends here, whatever the code
        if code == C.DONE or self.channel.greeted:
            return                  # greeted by a plugin, or by the front process
        self.respond(220, greeting_text(self.app))

    def _lookup_remote_host(self):
        """Start the PTR lookup of the client (as qpsmtpd does), unless -H / app.rdns
        is off; connection.remote_host waits for it when first read. It goes through
        the session's resolver, so fcrdns and helo share the answer."""
        conn = self.connection
        if conn.remote_host is None and getattr(self.app, "rdns", True) and conn.remote_ip:
            global _reverse_name
            if _reverse_name is None:    # dnspython only when looking up (-H: never)
                from .helpers.dns import reverse_name as _reverse_name
            conn.remote_host_from(_reverse_name(self.app, conn.remote_ip, conn))

    def read_and_dispatch(self):
        # max_session_time: no wait for a command past it (an upload is never cut)
        longest = self.limits.max_session_time(self.limits.stressed())
        self.channel.cap = self.began + longest if longest else None
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
        self.dispatch(line.decode("utf-8", "surrogateescape"))

    def dispatch(self, text):
        self.connection.notes["original_string"] = text
        parts = text.split(" ", 1)
        verb = parts[0].lower()
        rest = parts[1].strip() if len(parts) > 1 else ""
        self.verb = verb
        if self.app.on_command is not None:     # server hook: process title
            self.app.on_command(self)
        if self.app.loglevel >= C.LOGDEBUG:
            shown = text if verb != "auth" else "AUTH " + rest.split(" ", 1)[0] + " (credentials hidden)"
            self.log(C.LOGDEBUG, f"dispatching {shown}")
        handler = self.commands.get(verb) if _VERB.match(verb) else None
        if handler is None and verb == "auth" and self.auth_offered and self.auth is not None:
            handler = self.auth.cmd_auth
        if handler is None:
            self.count_error("unknown commands")
            return self.cmd_unrecognized(verb, rest)
        if verb in limits.JUNK_VERBS:
            self.junk += 1
            limit = self.limits.junk_limit(self.limits.stressed())
            if limit and self.junk > limit:
                self.count_error(f"junk commands (NOOP, RSET, VRFY, EXPN, HELP) past {limit}")
        handler(rest)

    def count_error(self, what):
        """One more error; past hard_error_limit the session ends with 421 (Postfix's
        smtpd_hard_error_limit). Delivering a message starts the count again."""
        self.errors += 1
        stressed = self.limits.stressed()
        limit = self.limits.error_limit(stressed)
        if limit and self.errors > limit:
            self.log(C.LOGNOTICE, f"too many errors ({self.errors}: {what}; hard_error_limit "
                     f"{limit}{', stress' if stressed else ''}): disconnecting")
            self.respond(421, f"4.7.0 {self.me} Error: too many errors")
            self.disconnect()

    # -- commands ---------------------------------------------------------------------------
    def cmd_unrecognized(self, verb, rest):
        code, msgs, _ = self.run_hooks("unrecognized_command", verb, rest)
        if code == C.DONE or self.answer("unrecognized_command", code, msgs):
            return
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
        words = self.plugin_parse(kind, rest)
        if words is False:
            return
        if words is None:
            words = rest.split()
        host = str(words[0]) if words and words[0] else ""
        if not host:
            return self.respond(501, f"{kind} requires domain/address - see RFC-2821 4.1.1.1")
        if self.connection.hello:
            return self.respond(503, "but you already said HELO ...")
        self.ensure_transaction()
        self.capabilities = []
        code, msgs, _ = self.run_hooks(kind, host, *words[1:])
        if code == C.DONE or self.answer(kind, code, msgs, kind=kind.upper(), host=host):
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
        for keyword in self.transaction.notes.get("capabilities") or []:   # qpsmtpd's note
            self.add_capability(keyword)
        lines += self.capabilities
        if self.auth is not None:
            mechanisms = self.auth.offered_mechanisms()
            self.auth_offered = bool(mechanisms)
            if mechanisms:
                lines.append("AUTH " + " ".join(mechanisms))
        self.respond(250, *lines)

    def _parse_envelope(self, verb, rest, pre_hook, check=None):
        """Split 'FROM:<a@b> PARAMS'; returns (path_text, params) or replies and None.
        check() runs between the syntax check and the pre hook (RCPT: MAIL first?)."""
        values = self.plugin_parse(verb, rest, rest)
        if values is False:
            return None
        if values is not None:
            path, params = (str(values[0]) if values else ""), envelope.param_dict(values[1:])
        else:
            argument = envelope.strip_keyword(verb, rest)
            if argument is None:
                self.respond(501, "Syntax error in command")
                return None
            path, params = envelope.split_envelope(argument, verb)
            if path is None:
                self.respond(501, params)
                return None
        if check is not None and not check():
            return None
        code, msgs, _ = self.run_hooks(pre_hook, path, params)
        if code == C.OK and msgs:
            path = msgs[0]
        elif code == C.DONE or self.answer(pre_hook, code, msgs):
            return None             # DONE: the plugin answered (parse_addr_withhelo: 501)
        return path, params

    def _read_address(self, verb, rest, pre_hook, parse, refusal, check=None):
        """MAIL/RCPT argument -> (Address, params), or None after replying:
        syntax, the pre hook, the path itself, then UTF-8 only with SMTPUTF8."""
        parsed = self._parse_envelope(verb, rest, pre_hook, check)
        if parsed is None:
            return None
        path, params = parsed
        address = parse(path)
        if address is None:
            self.log(C.LOGINFO, f"{refusal}: {path[:100]!r}")
            self.respond(501, refusal)
            return None
        if not self._utf8_allowed(address, params):
            self.respond(553, "Non-ASCII address needs SMTPUTF8 (RFC 6531)", enhanced="5.6.7")
            return None
        return address, params

    def _utf8_allowed(self, address, params):
        if not address.has_utf8:
            return True
        return self.esmtp and "smtputf8" in (self.transaction.notes.get("mail_params") or params)

    def _refuse_param(self, problem):
        code, text, enhanced = problem
        self.respond(code, text, enhanced=enhanced)

    def cmd_mail(self, rest):
        if self._refused_for_tls():
            return
        if not self.connection.hello:
            return self.respond(503, "please say hello first ...")
        self.reset_transaction()
        parsed = self._read_address("mail", rest, "mail_pre", envelope.parse_sender,
                                    "could not parse your mail from command")
        if parsed is None:
            return
        sender, params = parsed
        problem = envelope.check_size(params, self.app.databytes) or envelope.check_body(params)
        if problem:
            if problem[0] == 552:
                self.log(C.LOGINFO, f"declared SIZE {params['size']} exceeds databytes "
                         f"{self.app.databytes}")
            return self._refuse_param(problem)
        self.transaction.notes["mail_params"] = params
        code, msgs, _ = self.run_hooks("mail", sender, params)
        if code == C.DONE or self.answer("mail", code, msgs, sender=sender):
            return
        self.transaction.sender = sender
        self.log(C.LOGINFO, f"sender {sender} accepted")
        self.respond(250, f"{sender}, sender OK - how exciting to get mail from you!")

    def cmd_rcpt(self, rest):
        if self._refused_for_tls():
            return
        parsed = self._read_address("rcpt", rest, "rcpt_pre", envelope.parse_recipient,
                                    "could not parse recipient", check=self._have_sender)
        if parsed is None:
            return
        rcpt, params = parsed
        limit = self.app.max_recipients
        if limit and len(self.transaction.recipients) >= limit:
            self.log(C.LOGNOTICE, f"recipient {rcpt} refused: over max_recipients ({limit})")
            return self.respond(452, "Too many recipients", enhanced="4.5.3")
        code, msgs, _ = self.run_hooks("rcpt", rcpt, params)
        if code == C.OK:
            self.transaction.add_recipient(rcpt)
            self.log(C.LOGINFO, f"recipient {rcpt} accepted")
            return self.respond(250, f"{rcpt}, recipient ok")
        if code == C.DECLINED:
            self.log(C.LOGINFO, f"recipient {rcpt}: no plugin decided")
        elif code == C.DENY:
            self.log(C.LOGINFO, f"recipient {rcpt} refused: {' '.join(msgs) or 'relaying denied'}")
        if code != C.DONE:
            self.answer("rcpt", code, msgs)

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
        if code == C.DONE or self.answer("noop", code, msgs):
            return
        self.respond(250, "OK")

    def cmd_vrfy(self, rest):
        code, msgs, _ = self.run_hooks("vrfy")
        if code == C.DONE:
            return
        if code == C.OK:
            return self.respond(250, *(msgs or ["User OK"]))
        if code in C.DENY_CODES:
            return self.answer("vrfy", code, msgs, reset=True)
        self.respond(252, "Just try sending a mail and we'll see how it turns out ...")

    def cmd_help(self, rest):
        code, msgs, _ = self.run_hooks("help", rest)
        if code == C.DONE:
            return
        if self.answer("help", code, msgs):
            return
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
        if self.answer("data", code, msgs, reset=True):
            return
        if self.transaction.sender is None:
            return self.respond(503, "MAIL first")
        if not self.transaction.recipients:
            return self.respond(503, "RCPT first")
        self.respond(354, "go ahead")
        problem = DataReader(self).read()
        if problem is not None:
            self._refuse_param(problem)
            return self.reset_transaction()
        self.finish_message()

    def finish_message(self):
        """Add trace headers, run data_post, queue, and answer."""
        txn = self.transaction
        self.run_hooks("data_post_headers")
        trace.add_authentication_results(self, txn)
        trace.add_received(self, txn)
        code, msgs, _ = self.run_hooks("data_post")
        if code == C.DONE:
            return self.reset_transaction()
        if code in C.DENY_CODES:
            self.log(C.LOGINFO, f"message refused after DATA: {' '.join(msgs)}")
            return self.answer("data_post", code, msgs, reset=True)
        self.queue_message()

    def queue_message(self):
        code, msgs, _ = self.run_hooks("queue_pre")
        if code == C.DONE:
            return self.reset_transaction()
        if self.answer("queue_pre", code, msgs, reset=True):
            return
        code, msgs, plugin = self.run_hooks("queue")
        if code == C.OK:
            self.respond(250, *(msgs or ["Queued"]), enhanced="2.0.0")
            self.log(C.LOGINFO, f"queued by {plugin.plugin_name if plugin else '?'}: {' '.join(msgs)}")
            self.junk = self.errors = 0          # a client that delivers is no pest
        elif code != C.DONE:
            if code not in C.DENY_CODES:
                self.log(C.LOGWARN, "no queue plugin accepted the message")
            smtp_code, default, _ = reply_for("queue", code) or reply_for("queue", C.DECLINED)
            self.respond(smtp_code, *(msgs or [default]))
        self.run_hooks("queue_post")
        self.reset_transaction()
        if C.is_disconnect(code):
            self.disconnect()
