"""SMTP replies on the wire: multi-line form and RFC 3463 enhanced status codes."""

import re

_ENHANCED = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}(?: |$)")
_HASH_ENHANCED = re.compile(r"#([245]\.\d{1,3}\.\d{1,3})")

# Enhanced status codes used when a reply carries none of its own.
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


def reply_lines(messages):
    """Reply messages -> text lines: a message with newlines becomes several lines."""
    return [line for message in messages for line in str(message).split("\n")] or [""]


def format_reply(code, lines):
    """The wire form of a reply: `250-first`, ..., `250 last`, CRLF line ends."""
    last = len(lines) - 1
    text = "".join(f"{code}{' ' if i == last else '-'}{line}\r\n" for i, line in enumerate(lines))
    return text.encode("utf-8", "surrogateescape")


def enhanced_code(verb, code, lines):
    """The enhanced code for a reply: a `#x.y.z` in its text (qpsmtpd style), else
    the usual one for this verb and code."""
    for line in lines:
        match = _HASH_ENHANCED.search(line)
        if match and match.group(1)[0] == str(code)[0]:
            return match.group(1)
    return _ENH_BY_VERB.get((verb, code)) or _ENH_BY_CODE.get(code) or f"{code // 100}.0.0"


def with_enhanced(verb, code, lines, enhanced=None):
    """Prefix each line that has no enhanced code of its own (after EHLO only)."""
    enh = enhanced or enhanced_code(verb, code, lines)
    return [line if _ENHANCED.match(line) else (f"{enh} {line}" if line else enh)
            for line in lines]
