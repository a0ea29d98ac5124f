"""Shared pieces of the logging/* plugins: option parsing, level arguments, the
text of a log line and per-connection session ids."""

import itertools
import os
import re
import time

from .constants import log_level

_session_counter = itertools.count(1)
_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def level_arg(value, what="loglevel"):
    """'LOGINFO', 'info' or '6' -> 6; anything else stops start-up."""
    level = log_level(value)
    if level is None:
        raise ValueError(f"{what} '{value}' is not a log level (0-7 or LOGDEBUG, LOGINFO ...)")
    return level


def split_options(args, flags=(), valued=()):
    """Leading `flag` and `name value` words -> ({name: value or True}, rest)."""
    options, args = {}, list(args)
    while args:
        word = str(args[0]).lower()
        if word in flags:
            options[word] = True
            args.pop(0)
        elif word in valued:
            if len(args) < 2:
                raise ValueError(f"'{word}' needs a value")
            options[word] = args[1]
            del args[:2]
        else:
            break
    return options, args


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
