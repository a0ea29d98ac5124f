"""Signals that end an SMTP session.

They derive from BaseException, not Exception, on purpose: the plugin guard in
hooks.py catches Exception so that a crashing plugin becomes a temporary failure,
and a session-ending signal raised inside a plugin (respond_and_disconnect, a
client that went away or timed out during a plugin's own I/O) must pass through
that guard and end the session, not be logged as a plugin error.
"""


class SessionEnd(BaseException):
    """Base of every signal that ends the session."""


class Disconnect(SessionEnd):
    """End the session now; the reply, if any, has already been queued."""


class ClientTimeout(SessionEnd):
    """The client sent nothing within the time-out."""


class ClientGone(SessionEnd):
    """The client closed the connection (or a write failed)."""
