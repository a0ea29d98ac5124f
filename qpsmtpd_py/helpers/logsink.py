"""Shared pieces of the logging/* plugins: the text of a log line and
per-connection session ids (their arguments are declared: qpsmtpd_py/arguments.py)."""

import itertools
import os
import re
import time

_session_counter = itertools.count(1)
_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def line_text(hook, plugin, msg):
    """'(rcpt) rcpt_ok: pass, ...': where a log line comes from, then the message.
    Control characters (from client input) become '?'; newlines stay."""
    parts = []
    if hook:
        parts.append(f"({hook})")
    if plugin:
        parts.append(f"{plugin}:")
    parts.append(_UNSAFE.sub("?", str(msg)))
    return " ".join(parts)


def session_id(connection):
    """An id for this connection (%i in log file names): the server's own id,
    else one made on first use, 'parent' outside a session."""
    if connection is None:
        return "parent"
    if connection.id:
        return str(connection.id)
    sid = connection.notes.get("logging-session-id")
    if sid is None:
        sid = f"{int(time.time()):08d}-{os.getpid():04d}-{next(_session_counter)}"
        connection.notes["logging-session-id"] = sid
    return sid
