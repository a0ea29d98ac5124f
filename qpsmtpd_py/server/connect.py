"""Serving one accepted client in a worker process: the pre-connection hooks
(which may refuse it before the greeting), then the SMTP session."""

from .. import constants as C
from ..channel import ClientGone, SocketChannel
from ..plugin import CURRENT
from ..replies import format_reply, reply_lines
from ..summary import new_session_id
from .common import new_connection, run_session, unmapped_ip


def peer_ip(peer):
    """The client's IP as plugins see it: IPv4-mapped IPv6 addresses unwrapped."""
    return unmapped_ip(peer[0])


class Handoff:
    """A client the prefork front passed on (front.py): whether the front greeted
    it, whether the client talked before that greeting (earlytalker), and the bytes
    the front read (its first command line, or what it said before the greeting)."""

    smtps = False
    proxy = False

    def __init__(self, greeted, early, data):
        self.greeted = bool(greeted)
        self.early = early
        self.data = data


def serve_client(app, sock, peer, smtps, max_conn_ip, child_addrs, refusals, local=None,
                 handoff=None):
    """Run pre-connection, then the session. `refusals` maps 550 and 451 to the
    default texts of this server mode; `local` replaces the socket's own address
    (behind a PROXY protocol proxy). Returns False when the client was refused.
    A refusal of a client the front already greeted answers its first command."""
    local = local or sock.getsockname()
    connection = new_connection(peer[:2], local[:2], smtps=smtps)
    connection.id = new_session_id()
    channel = SocketChannel(sock, app.timeout)
    channel.progress = app.keepalive         # liveness: bytes flowing are progress
    if handoff is not None:
        channel.buffer += handoff.data
        channel.greeted = handoff.greeted
        if handoff.greeted:
            channel.pregreet = bool(handoff.early)
    code, messages = run_pre_connection(app, connection, max_conn_ip, child_addrs)
    if code in C.DENY_CODES:
        reply = 451 if C.is_soft(code) else 550
        refuse(channel, reply, messages or [refusals[reply]])
        app.log(C.LOGNOTICE, f"[{connection.id}] pre-connection: refused "
                f"{connection.remote_ip} with {reply} {' '.join(messages or [refusals[reply]])}")
        return False
    run_session(app, channel, connection)
    return True


class PreConnection:
    """What `self.qp` is for pre-connection plugins: the new connection, whose notes
    (karma's karma_history ...) carry over into the session; no transaction yet."""

    transaction = None

    def __init__(self, app, connection):
        self.app = app
        self.connection = connection


def run_pre_connection(app, connection, max_conn_ip, child_addrs):
    """The pre-connection chain -> (code, messages); plugins see self.connection."""
    hooks = app.hooks
    if not hooks.registry["pre-connection"]:
        return C.DECLINED, []
    CURRENT.session = PreConnection(app, connection)          # what self.qp is
    try:
        code, messages, _ = hooks.run("pre-connection", None, dict(
            remote_ip=connection.remote_ip, remote_port=connection.remote_port,
            local_ip=connection.local_ip, local_port=connection.local_port,
            max_conn_ip=max_conn_ip, child_addrs=child_addrs))
    finally:
        CURRENT.session = None
    return code, messages


def refuse(channel, code, messages):
    channel.write(format_reply(code, reply_lines(messages)))
    try:
        channel.flush()
    except ClientGone:
        pass
    channel.close()
