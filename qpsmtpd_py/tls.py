"""TLS for SMTP sessions: the server SSL context, STARTTLS and implicit TLS (SMTPS).

The tls plugin builds an SSL context from qpsmtpd's files and hands it over with
`Plugin.provide_tls(context)` (install() here); the engine uses it on SMTPS
listeners, and the plugin asks for STARTTLS with `Plugin.start_tls()` (upgrade()
here). Plugins never touch the socket or the session's TLS state. Only this
module touches the client's socket for TLS, so the STARTTLS injection defence
(CVE-2011-0411, CVE-2024-34083: forget everything the client pipelined after
STARTTLS) lives in one place.
"""

import os
import socket
import ssl

from . import constants as C
from .channel import ClientGone

DEFAULT_FILES = {
    "cert": "qpsmtpd-server.crt",
    "key": "qpsmtpd-server.key",
    "ca": "qpsmtpd-ca.crt",
    "dhparam": "qpsmtpd-dhparam.pem",
}
HANDSHAKE_TIMEOUT = 60          # seconds; a stalled handshake must not hold a worker for 20 minutes

_VERSIONS = [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_2,
             ssl.TLSVersion.TLSv1_3]
_VERSION_NAMES = {
    "tlsv1": ssl.TLSVersion.TLSv1, "tlsv1_0": ssl.TLSVersion.TLSv1, "tlsv1.0": ssl.TLSVersion.TLSv1,
    "tlsv1_1": ssl.TLSVersion.TLSv1_1, "tlsv1.1": ssl.TLSVersion.TLSv1_1,
    "tlsv1_2": ssl.TLSVersion.TLSv1_2, "tlsv1.2": ssl.TLSVersion.TLSv1_2,
    "tlsv1_3": ssl.TLSVersion.TLSv1_3, "tlsv1.3": ssl.TLSVersion.TLSv1_3,
}
_ALL_NAMES = ("sslv23", "all", "default", "tls")
_OBSOLETE = ("sslv2", "sslv3")
_SAFE_MINIMUM = ssl.TLSVersion.TLSv1_2


class TLSFailed(Exception):
    """The TLS handshake with the client failed; the text says why."""


def parse_protocols(text):
    """config/tls_protocols ('SSLv23:!SSLv2:!SSLv3', 'TLSv1_2:TLSv1_3', '!TLSv1_2')
    -> (minimum, maximum) TLSVersion.

    Versions older than TLS 1.2 are only enabled when named explicitly: the
    generic 'SSLv23' of old qpsmtpd configs means "everything that is safe".
    """
    tokens = [t for t in (text or "").replace(",", ":").replace(" ", ":").split(":") if t]
    enabled, named, removed = set(), set(), set()
    for token in tokens:
        negate = token.startswith("!") or token.startswith("-")
        name = token.lstrip("!-+").lower()
        if name in _OBSOLETE:
            if not negate:
                raise ValueError(f"tls_protocols: {token} is obsolete and not supported")
            continue
        if name in _ALL_NAMES:
            versions = set(_VERSIONS)
        elif name in _VERSION_NAMES:
            versions = {_VERSION_NAMES[name]}
        else:
            raise ValueError(f"tls_protocols: unknown protocol '{token}'")
        if negate:
            removed |= versions
        else:
            enabled |= versions
            if name not in _ALL_NAMES:
                named |= versions
    if not enabled:
        enabled = set(_VERSIONS)
    enabled = {v for v in enabled - removed if v >= _SAFE_MINIMUM or v in named}
    if not enabled:
        raise ValueError(f"tls_protocols: '{text}' leaves no protocol enabled")
    return min(enabled), max(enabled)


def build_context(cert, key, ca=None, dhparam=None, ciphers=None, protocols=None):
    """A server SSLContext; raises ValueError naming the file that is wrong."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version, context.maximum_version = parse_protocols(protocols)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"Could not create SSL context from {cert} and {key}: {exc}") from exc
    if ca:
        try:
            context.load_verify_locations(cafile=ca)     # lets OpenSSL send the chain
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"Could not load the CA file {ca}: {exc}") from exc
    if dhparam:
        try:
            context.load_dh_params(dhparam)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"Could not load the DH parameters {dhparam}: {exc}") from exc
    if ciphers:
        try:
            context.set_ciphers(ciphers)
        except ssl.SSLError as exc:
            raise ValueError(f"tls_ciphers: no usable cipher in '{ciphers}'") from exc
    return context


def default_ssl_dir(config_dirs):
    """Where the certificates live unless the plugin line names them: ./ssl as
    qpsmtpd, else ssl/ inside a config directory."""
    candidates = ["ssl"] + [os.path.join(d, "ssl") for d in config_dirs]
    for candidate in candidates:
        if os.path.isdir(candidate):
            return candidate
    return "ssl"


class TLSService:
    """The loaded TLS settings of the server, and the TLS operations on a session."""

    def __init__(self, context, description=""):
        self.context = context
        self.description = description

    def available(self, session):
        """STARTTLS is possible: a socket (not a pipe) and no TLS yet."""
        return (getattr(session.channel, "sock", None) is not None
                and not session.connection.tls and not session.tls_failed)

    def wrap_session(self, session, implicit=False):
        """Implicit TLS (SMTPS, before the greeting) or the STARTTLS upgrade."""
        if implicit:
            handshake(session, self.context)
        else:
            start_tls(session, self.context)


def install(app, context, description=""):
    """Make `context` the server's TLS settings (until the next reload)."""
    app.tls = TLSService(context, description)


def available(session):
    """TLS can start on this session now: settings installed, a socket without TLS,
    no failed attempt."""
    service = getattr(session.app, "tls", None)
    return service is not None and service.available(session)


def upgrade(session, implicit=False):
    """STARTTLS (implicit=False: 220, then the handshake) or implicit TLS (port 465,
    before the greeting). Raises TLSFailed; a failed STARTTLS leaves the session
    refusing mail commands (550), as qpsmtpd does."""
    if not available(session):
        raise TLSFailed("TLS is not available on this connection")
    try:
        session.app.tls.wrap_session(session, implicit=implicit)
    except TLSFailed:
        if not implicit:
            session.tls_failed = True
        raise


def start_tls(session, context):
    """STARTTLS: answer 220, forget what the client pipelined, handshake, and
    start the session afresh (RFC 3207 4.2: the client must EHLO again).

    Raises TLSFailed; the session is then back on the plaintext socket.
    """
    session.respond(220, "Go ahead with TLS")
    try:
        session.channel.flush()
    except ClientGone as exc:
        raise TLSFailed(f"client went away: {exc}") from exc
    dropped = len(session.channel.buffer)
    session.channel.discard_input()
    if dropped:
        session.log(C.LOGNOTICE, f"STARTTLS: discarded {dropped} octets the client sent "
                                 "ahead of the handshake (command injection defence)")
    handshake(session, context)
    connection = session.connection
    connection.hello = None
    connection.hello_host = None
    session.esmtp = False
    session.auth_offered = False
    session.reset_transaction()


def handshake(session, context):
    """Wrap the channel's socket in TLS and record protocol and cipher."""
    channel = session.channel
    raw = channel.sock
    raw.settimeout(min(channel.timeout or HANDSHAKE_TIMEOUT, HANDSHAKE_TIMEOUT))
    try:
        tls_sock = context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
    except (OSError, ValueError) as exc:
        raise TLSFailed(str(exc)) from exc
    try:
        tls_sock.do_handshake()
    except (OSError, ValueError) as exc:
        # back to the plain socket, so the failure can still be answered
        channel.sock = socket.socket(fileno=tls_sock.detach())
        raise TLSFailed(_reason(exc)) from exc
    channel.sock = tls_sock
    cipher = tls_sock.cipher() or ("", "", 0)
    connection = session.connection
    connection.tls = {"version": tls_sock.version(), "cipher": cipher[0], "bits": cipher[2]}
    connection.notes["tls_enabled"] = 1
    session.log(C.LOGINFO, f"TLS established: {connection.tls['version']} {cipher[0]} "
                           f"({cipher[2]} bits)")


def _reason(exc):
    if isinstance(exc, socket.timeout):
        return "handshake timed out"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return exc.reason
    return str(exc) or exc.__class__.__name__
