"""SMTP AUTH (RFC 4954): the AUTH command and the SASL exchanges PLAIN, LOGIN and
CRAM-MD5, as qpsmtpd's Qpsmtpd::Auth.

The exchange yields (mech, user, pass_clear, pass_hash, ticket) for the hooks:
`auth-<mech>` first, then the generic `auth`; OK is success, DENY stops the chain.
Differences from qpsmtpd, all deliberate and safe:
  * AUTH is offered over TLS only, unless config `auth_allow_plaintext` is 1;
  * client data is strict base64, UTF-8, without control characters, and of
    bounded length (501 otherwise);
  * empty passwords never reach the plugins;
  * after `auth_max_failures` (default 3, 0 = unlimited) failed AUTH commands the
    client gets 421 and is disconnected;
  * brute force is slowed and cut off (limits.py): from the second refused
    password of a session on, the reply waits auth_failure_delay seconds, doubling,
    at most auth_failure_delay_max; refused passwords are counted per client IP in the
    shared store (table `auth_failures`, auth_failure_window seconds), and an IP
    with auth_max_failures_ip of them gets 421 to AUTH without a try. Only refused
    credentials count there: malformed exchanges test no password;
  * a failure reply does not carry the plugin's message (no user enumeration);
  * no state survives an aborted exchange (CVE-2011-1720 shape), and passwords
    are never logged.
"""

import base64
import binascii
import re
import secrets
import time

from . import constants as C
from .channel import LineTooLong
from .helpers.store import StoreError, open_store
from .limits import policy

FAILURE_TABLE = "auth_failures"  # store table: client IP -> refused passwords lately

MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5")
SASL_LINE_LIMIT = 12288          # RFC 4954 4: the longest AUTH or response line
MAX_USER = 512                   # octets
MAX_PASSWORD = 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_HEX_DIGEST = re.compile(r"^[0-9a-fA-F]{32}$")


class SASLError(Exception):
    """The exchange ends with this reply: (code, text, enhanced)."""

    def __init__(self, code, text, enhanced=None):
        super().__init__(text)
        self.code, self.text, self.enhanced = code, text, enhanced


def mechanisms(app):
    """Mechanisms with a hook: auth-<mech> hooks, or all three for a generic `auth` hook."""
    if app.hooks.has("auth"):
        return list(MECHANISMS)
    return [m for m in MECHANISMS if app.hooks.has("auth-" + m.lower())]


def handler_for(session):
    """An AuthHandler when some plugin authenticates, else None (AUTH unknown)."""
    return AuthHandler(session) if mechanisms(session.app) else None


class AuthHandler:
    """AUTH for one session; session.auth points here."""

    def __init__(self, session):
        self.session = session

    @property
    def config(self):
        return self.session.app.config

    # -- EHLO ----------------------------------------------------------------------------
    def offered_mechanisms(self):
        """What EHLO advertises now: nothing without TLS unless auth_allow_plaintext."""
        session = self.session
        if session.tls_failed:
            return []
        if not session.connection.tls:
            if not self.config.get_bool("auth_allow_plaintext"):
                return []
            if self.config.get_bool("tls_before_auth") and self._starttls_offered():
                return []
        return mechanisms(session.app)

    def _starttls_offered(self):
        return "STARTTLS" in self.session.capabilities

    # -- the AUTH command ----------------------------------------------------------------------
    def cmd_auth(self, rest):
        session = self.session
        conn = session.connection
        words = rest.split()
        conn.notes["original_string"] = "AUTH " + (words[0] if words else "")   # no credentials
        if session.tls_failed:
            return session.respond(550, "Command refused due to lack of security")
        if conn.auth_user:
            return session.respond(503, "but you already said AUTH ...")
        if session.transaction is not None and session.transaction.sender is not None:
            return session.respond(503, "AUTH not permitted during a mail transaction")
        self._refuse_blocked_ip()
        parsed = session.plugin_parse("auth", rest, rest)     # an auth_parse hook's parser
        if parsed is False:
            return None
        if parsed is not None:
            words = [str(word) for word in parsed if word is not None]
        if not words or len(words) > 2:
            return self._failed(501, "Syntax error: AUTH mechanism [initial-response]", "5.5.4")
        mech = words[0].upper()
        if mech not in self.offered_mechanisms():
            shown = _CONTROL.sub("?", words[0])[:20]
            return self._failed(504, f"Unimplemented authentication mechanism: {shown}", "5.5.4")
        initial = words[1] if len(words) > 1 else None
        try:
            user, clear, digest, ticket = EXCHANGES[mech](self, initial)
        except SASLError as exc:
            session.log(C.LOGINFO, f"auth: {mech} exchange refused: {exc.text}")
            return self._failed(exc.code, exc.text, exc.enhanced)
        self._run_hooks(mech, user, clear, digest, ticket)

    def _run_hooks(self, mech, user, clear, digest, ticket):
        session = self.session
        conn = session.connection
        args = (mech.lower(), user, clear, digest, ticket)
        code, msgs, plugin = session.run_hooks("auth-" + mech.lower(), *args)
        if code == C.DECLINED:
            code, msgs, plugin = session.run_hooks("auth", *args)
        detail = " - " + " ".join(msgs) if msgs else ""
        who = plugin.plugin_name if plugin else "no plugin"
        if code == C.OK:
            conn.relay_client = True
            conn.auth_user = user
            conn.auth_mechanism = mech.lower()
            if conn.notes.get("naughty"):
                conn.notes["naughty"] = 0
                session.log(C.LOGINFO, "auth success cleared naughty")
            session.log(C.LOGINFO, f"auth: pass, {mech} for {user} ({who})")
            return session.respond(235, f"{mech} authentication successful for {user}{detail}")
        if code == C.DONE:
            return None
        session.log(C.LOGINFO, f"auth: fail, {mech} for {user} from {conn.remote_ip} "
                               f"({who}: {C.return_name(code)}{detail})")
        if code in (C.DENYSOFT, C.DENYSOFT_DISCONNECT):
            self._failed(454, "Temporary authentication failure, try again later", "4.7.0")
        else:
            self._slow_down()
            self._failed(535, f"{mech} authentication failed for {user} from {conn.remote_ip}",
                         "5.7.8")
        if C.is_disconnect(code):
            session.disconnect()
        return None

    # -- brute force ------------------------------------------------------------------------
    def _failures_table(self):
        """The store's table of refused passwords per IP, or None when counting
        across sessions is off or the store cannot be used (logged; AUTH goes on
        with the per-session limits only)."""
        if not policy(self.session.app).auth_max_failures_ip:
            return None
        try:
            return open_store(self.session.app).table(FAILURE_TABLE)
        except StoreError as exc:
            self.session.log(C.LOGERROR, f"error, store: {exc}; AUTH failures are not "
                                         "counted across sessions")
            return None

    def _ip_failures(self, table, add=0):
        ip = self.session.connection.remote_ip or "unknown"
        limits = policy(self.session.app)
        try:
            if add:
                return table.incr(ip, add, ttl=limits.auth_failure_window)
            return int(table.get(ip, 0) or 0)
        except (StoreError, ValueError) as exc:
            self.session.log(C.LOGERROR, f"error, store: {exc}; AUTH failures of {ip} "
                                         "not counted")
            return 0

    def _refuse_blocked_ip(self):
        """An IP with auth_max_failures_ip refused passwords in the window: 421, no try."""
        table = self._failures_table()
        if table is None:
            return
        limits = policy(self.session.app)
        count = self._ip_failures(table)
        if count < limits.auth_max_failures_ip:
            return
        session = self.session
        ip = session.connection.remote_ip
        session.log(C.LOGNOTICE, f"auth: refused AUTH from {ip}: {count} failed attempts "
                                 f"from it within {limits.auth_failure_window}s "
                                 "(auth_max_failures_ip); disconnecting")
        session.respond(421, f"{session.me} Too many failed authentication attempts from "
                             f"{ip}; try again later", enhanced="4.7.0")
        session.disconnect()

    def _slow_down(self):
        """A refused password: counted for the IP in the store, and for the session,
        whose second and later ones wait before their reply (on the app's clock)."""
        session = self.session
        notes = session.connection.notes
        notes["auth_refused"] = notes.get("auth_refused", 0) + 1
        table = self._failures_table()
        if table is not None:
            self._ip_failures(table, add=1)
        delay = policy(session.app).auth_delay(notes["auth_refused"])
        if delay:
            session.log(C.LOGINFO, f"auth: {notes['auth_refused']} passwords refused to "
                                   f"{session.connection.remote_ip} in this session; "
                                   f"reply delayed {delay}s")
            session.app.clock.sleep(delay)

    def _failed(self, code, text, enhanced=None):
        """Answer a failed AUTH; the last allowed failure gets 421 and a disconnect."""
        session = self.session
        notes = session.connection.notes
        notes["auth_failures"] = notes.get("auth_failures", 0) + 1
        limit = policy(session.app).auth_max_failures
        if limit and notes["auth_failures"] >= limit:
            session.log(C.LOGNOTICE, f"auth: {notes['auth_failures']} failed AUTH attempts from "
                                     f"{session.connection.remote_ip}; disconnecting")
            session.respond(421, f"{session.me} Too many failed authentication attempts; "
                                 "closing connection", enhanced="4.7.0")
            session.disconnect()
        session.respond(code, text, enhanced=enhanced)

    # -- reading the client's responses -------------------------------------------------------
    def challenge(self, text):
        """Send `334 text` and return the client's decoded answer (bytes)."""
        self.session.respond(334, text)
        try:
            raw = self.session.channel.readline(SASL_LINE_LIMIT)
        except LineTooLong:
            raise SASLError(501, "Authentication data too long", "5.5.6")
        return decode_response(raw.rstrip(b"\r\n"))

    # -- the mechanisms ----------------------------------------------------------------------
    def initial_or_challenge(self, initial, text):
        """The initial response from the AUTH line if given, else the answer to `334 text`."""
        if initial:
            return decode_response(initial.encode("ascii", "replace"))
        return self.challenge(text)

    def plain(self, initial):
        parts = self.initial_or_challenge(initial, "").split(b"\0")
        if len(parts) != 3 or not parts[1]:
            raise SASLError(535, "Authentication invalid", "5.7.8")
        authz, user = _text(parts[0], "user"), _text(parts[1], "user")
        password = _text(parts[2], "password")
        _check_user(user)
        if authz and authz != user:
            raise SASLError(535, f"Authentication invalid for {user}", "5.7.8")
        _check_password(password)
        return user, password, None, None

    def login(self, initial):
        user = _text(self.initial_or_challenge(initial, _b64("Username:")), "user")
        _check_user(user)
        password = _text(self.challenge(_b64("Password:")), "password")
        _check_password(password)
        return user, password, None, None

    def cram_md5(self, initial):
        if initial:
            raise SASLError(501, "CRAM-MD5 takes no initial response", "5.5.4")
        ticket = f"<{secrets.randbits(48):x}.{int(time.time()):x}@{self.session.me}>"
        answer = _text(self.challenge(_b64(ticket)), "user")
        user, _, digest = answer.rpartition(" ")
        if not _HEX_DIGEST.match(digest):
            raise SASLError(501, "Invalid CRAM-MD5 response", "5.5.2")
        _check_user(user)
        return user, None, digest.lower(), ticket


EXCHANGES = {"PLAIN": AuthHandler.plain, "LOGIN": AuthHandler.login,
             "CRAM-MD5": AuthHandler.cram_md5}


def decode_response(line):
    """One client response: '*' cancels, '=' is empty, otherwise strict base64."""
    if line == b"*":
        raise SASLError(501, "Authentication canceled", "5.7.0")
    if line == b"=":
        return b""
    try:
        return base64.b64decode(line, validate=True)
    except (binascii.Error, ValueError):
        raise SASLError(501, "Invalid base64 data in authentication response", "5.5.2")


def _text(data, what):
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SASLError(501, f"Invalid {what}: not UTF-8", "5.5.2")
    if len(data) > (MAX_PASSWORD if what == "password" else MAX_USER):
        raise SASLError(501, f"Invalid {what}: too long", "5.5.2")
    return text


def _check_user(user):
    if not user:
        raise SASLError(535, "Authentication invalid", "5.7.8")
    if _CONTROL.search(user):
        raise SASLError(501, "Invalid user name", "5.5.2")


def _check_password(password):
    if not password:
        raise SASLError(535, "Authentication invalid", "5.7.8")
    if any(ch in password for ch in "\0\r\n"):
        raise SASLError(501, "Invalid password", "5.5.2")


def _b64(text):
    return base64.b64encode(text.encode()).decode("ascii")
