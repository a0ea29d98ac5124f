"""MIME for content plugins: parse a Content-Type value, tell multipart mail, and
walk the MIME tree of a message while reading its body once, line by line, so a
20 MB message costs no more memory than a small one (the stdlib email parser would
hold it all).

    for part in walk(transaction):
        part.chain        # Content-Type values from the top down, folded to one line
        part.type         # 'application/x-evil' (lower case; text/plain when absent)
        part.params       # {'name': 'x.exe', 'charset': ...}
        part.header       # the part's Header (the message's for the top part)
"""

import re

from ..header import Header

HEADER_LIMIT = 256 * 1024            # the most one part's header block may hold in memory
LINE_LIMIT = 64 * 1024               # longer lines are read in pieces


def fold(value):
    """A header value on one line: folding and runs of white space become one space."""
    return " ".join(str(value or "").split())


_TOKEN = r"[^\s;=\"]+"
_PARAM = re.compile(rf"\s*;\s*({_TOKEN})\s*=\s*(\"(?:[^\"\\]|\\.)*\"|[^\s;]*)")


def content_type(value, default="text/plain"):
    """'Text/Plain; charset="UTF-8"' -> ('text/plain', {'charset': 'UTF-8'}).
    Parameter names are lower-cased; quotes and backslash escapes removed. An
    absent or unreadable type gives `default`."""
    value = fold(value)
    match = re.match(r"\s*([^\s;/]+)\s*/\s*([^\s;]+)", value)
    if not match:
        return default, {}
    params = {}
    for name, raw in _PARAM.findall(value[match.end():]):
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params[name.lower()] = raw
    return f"{match.group(1)}/{match.group(2)}".lower(), params


_MULTIPART = re.compile(r"\bmultipart/.*\bboundary=\"?([^\"]+)", re.IGNORECASE)


def is_multipart(header):
    """qpsmtpd's test (virus scanners skip other mail): a multipart Content-Type
    with a boundary."""
    value = header.get("Content-Type") if header is not None else None
    return bool(value and _MULTIPART.search(" ".join(str(value).split("\n"))))


class Part:
    def __init__(self, header, chain, default="text/plain"):
        self.header = header
        raw = header.get("Content-Type")
        self.type, self.params = content_type(raw, default)
        self.chain = chain + [fold(raw) if raw else self.type]
        self.depth = len(chain)

    @property
    def boundary(self):
        if self.type.startswith("multipart/"):
            return self.params.get("boundary") or None
        return None

    def __repr__(self):
        return f"<Part {' > '.join(self.chain)}>"


def body_lines(transaction):
    """The body as byte lines (LF kept), long lines in LINE_LIMIT pieces; each item
    is (line, at_line_start)."""
    fh = transaction.body_fh()
    start = True
    try:
        while True:
            line = fh.readline(LINE_LIMIT)
            if not line:
                return
            yield line, start
            start = line.endswith(b"\n")
    finally:
        transaction.body_bytes(0)        # leaves the body positioned at its end, as writers expect


def walk(transaction):
    """Every MIME part of the message, the message itself first, in order."""
    top = Part(transaction.header or Header(), [])
    yield top
    stack = []                       # [(b"--boundary", chain of the multipart, digest?)]
    if top.boundary:
        stack.append((b"--" + top.boundary.encode("utf-8", "replace"), top.chain,
                      top.type == "multipart/digest"))
    pending = None                   # (chain, default type, [header lines]) while reading one
    for line, at_start in body_lines(transaction):
        if pending is not None:
            chain, default, lines = pending
            if line.strip():
                if sum(len(x) for x in lines) < HEADER_LIMIT:
                    lines.append(line)
                continue
            pending = None
            part = Part(Header.parse(b"".join(lines).decode("utf-8", "surrogateescape")),
                        chain, default)
            yield part
            if part.boundary:
                stack.append((b"--" + part.boundary.encode("utf-8", "replace"), part.chain,
                              part.type == "multipart/digest"))
            elif part.type == "message/rfc822":
                pending = (part.chain, "text/plain", [])
            continue
        if not at_start or not line.startswith(b"--") or not stack:
            continue
        text = line.rstrip(b"\r\n").rstrip(b" \t")
        for level in range(len(stack) - 1, -1, -1):
            marker, chain, digest = stack[level]
            if text == marker + b"--":
                del stack[level:]
                break
            if text == marker:
                del stack[level + 1:]
                pending = (chain, "message/rfc822" if digest else "text/plain", [])
                break
