"""MAIL FROM / RCPT TO arguments: pure functions, no session state.

Split as qpsmtpd's Qpsmtpd::Command does it (ESMTP parameters peeled off the
right-hand end), then parsed into an Address with the checks qpsmtpd applies.
"""

import re

from .address import Address

_PARAM_AT_END = re.compile(r"\s+([A-Za-z0-9][A-Za-z0-9\-]*(?:=[^= \x00-\x1f]+)?)$", re.ASCII)
_AT_THEN_SPACE = re.compile(r"@.*\s", re.ASCII)
_KEYWORD = {"mail": re.compile(r"from:\s*", re.I | re.ASCII),
            "rcpt": re.compile(r"to:\s*", re.I | re.ASCII)}


def strip_keyword(verb, rest):
    """'FROM:<a@b> SIZE=1' -> '<a@b> SIZE=1' for MAIL (TO: for RCPT); None if absent."""
    match = _KEYWORD[verb].match(rest)
    return rest[match.end():] if match else None


def split_envelope(text, verb):
    """The argument after the colon -> (path, {param: value}) or (None, error text).
    'MAIL FROM:' alone is the null sender."""
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
    return line, param_dict(words)


def param_dict(words):
    """ESMTP parameters ['SIZE=10', 'BODY=8BITMIME', 'SMTPUTF8'] -> {'size': '10',
    'body': '8BITMIME', 'smtputf8': None}; a dict (from a plugin's parser) is taken
    with its keys lower-cased."""
    if len(words) == 1 and isinstance(words[0], dict):
        return {str(k).lower(): v for k, v in words[0].items()}
    params = {}
    for word in words:
        key, eq, value = str(word).partition("=")
        params[key.lower()] = value if eq else None
    return params


def has_surrogate(text):
    """Bytes that were not valid UTF-8 decode to lone surrogates."""
    return not text.isascii() and any("\udc80" <= ch <= "\udcff" for ch in text)


def parse_sender(path):
    """A MAIL FROM path -> Address, or None when qpsmtpd would answer
    `501 could not parse your mail from command` (a bare postmaster is allowed)."""
    if path == "":
        path = "<>"
    sender = Address.parse(path) if path.startswith("<") else None
    if sender is None or has_surrogate(path):
        return None
    if sender.host is None and not sender.is_null and sender.user != "postmaster":
        return None
    return sender


def parse_recipient(path):
    """A RCPT TO path -> Address, or None (`501 could not parse recipient`)."""
    rcpt = Address.parse(path) if path.startswith("<") else None
    if (rcpt is None or rcpt.is_null or has_surrogate(path)
            or (rcpt.host is None and rcpt.user.lower() != "postmaster")):
        return None
    return rcpt


def check_size(params, databytes):
    """The SIZE parameter -> None if fine, else (code, text, enhanced)."""
    if "size" not in params:
        return None
    size = params["size"]
    if not (size and size.isascii() and size.isdigit()):      # '²'.isdigit() is True
        return 501, "Syntax error in parameters: SIZE needs a number", "5.5.4"
    if databytes and int(size) > databytes:
        return 552, "Message size exceeds fixed maximum message size", "5.3.4"
    return None


def check_body(params):
    """The BODY parameter -> None if fine, else (code, text, enhanced)."""
    body = params.get("body")
    if body is not None and body.upper() not in ("7BIT", "8BITMIME"):
        return 501, "Syntax error in parameters: BODY must be 7BIT or 8BITMIME", "5.5.4"
    return None
