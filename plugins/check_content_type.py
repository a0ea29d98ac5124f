"""check_content_type - accept or refuse messages by the Content-Types of their MIME
parts (Peter J. Holzer's plugin).

The MIME tree is walked while the body is read once (any size, bounded memory). Each
part is described by its Content-Type chain: the Content-Type values from the
message down to the part, each folded to one line, joined by TAB (a part without
Content-Type counts as text/plain, in a multipart/digest as message/rfc822). For
every part in order, the lines of config/content_types are tried:

  m{REGEX}FLAGS  RESULT          (also /REGEX/FLAGS; FLAGS of i, s, m, x)

The first line whose pattern matches decides for that part: DENY refuses the
message (`552 Message denied`), DENYSOFT defers it (`452 Message denied
temporarily`), OK accepts it and skips the content plugins after this one, DECLINED
makes no decision (the next part is looked at).

No arguments (but loglevel). Also loadable as `check_content_types` (its manual's
name). Hooks: data_post.
Example config/content_types:
  m{^(.*\\t)*application/x-(msdownload|msdos-program)(\\s|;|$)}i DENY
  m{^multipart/signed}i OK
"""

import re

from qpsmtpd_py.api import (
    DECLINED, DENY, DENYSOFT, LOGERROR, LOGINFO, OK, Plugin, mime_parts,
)

RESULTS = {"OK": OK, "DENY": DENY, "DENYSOFT": DENYSOFT, "DECLINED": DECLINED}
CLOSING = {"{": "}", "(": ")", "[": "]", "<": ">"}
FLAGS = {"i": re.IGNORECASE, "s": re.DOTALL, "m": re.MULTILINE, "x": re.VERBOSE}


def parse_rule(text):
    """'m{regex}i DENY' -> (compiled, result name); ValueError if malformed."""
    text = text.strip()
    if text.startswith("m") and len(text) > 1 and not text[1].isalnum() and not text[1].isspace():
        opener, body = text[1], text[2:]
    elif text.startswith("/"):
        opener, body = "/", text[1:]
    else:
        raise ValueError("a rule starts with m{...} or /.../")
    closer = CLOSING.get(opener, opener)
    depth, end, index = 0, None, 0
    while index < len(body):
        char = body[index]
        if char == "\\":
            index += 2                          # an escaped character never closes
            continue
        if char == opener and closer != opener:
            depth += 1
        elif char == closer:
            if depth == 0:
                end = index
                break
            depth -= 1
        index += 1
    if end is None:
        raise ValueError(f"no closing {closer}")
    pattern, rest = body[:end], body[end + 1:]
    match = re.fullmatch(r"([a-z]*)\s+(\S+)\s*", rest)
    if not match or match.group(2).upper() not in RESULTS:
        raise ValueError("expected FLAGS then OK, DENY, DENYSOFT or DECLINED after the pattern")
    flags = 0
    for flag in match.group(1):
        if flag not in FLAGS:
            raise ValueError(f"unknown flag {flag}")
        flags |= FLAGS[flag]
    return re.compile(pattern, flags), match.group(2).upper()


class CheckContentType(Plugin):
    arguments = ()

    def compile(self, lines):
        rules = []
        for line in lines:
            try:
                rules.append(parse_rule(line))
            except (ValueError, re.error) as exc:
                self.log(LOGERROR, f"{line.origin}: bad rule '{line.strip()}' skipped: {exc}")
        return rules

    def hook_data_post(self, transaction):
        rules = self.parsed_config("content_types", self.compile)
        if not rules:
            return DECLINED
        for part in mime_parts(transaction):
            self.keepalive()
            chain = "\t".join(part.chain)
            for pattern, result in rules:
                if not pattern.search(chain):
                    continue
                if result == "DECLINED":
                    break
                self.log(LOGINFO, f"{'pass' if result == 'OK' else 'fail'}, {result} for "
                         f"{chain!r} ({pattern.pattern})")
                return RESULTS[result]
        return DECLINED
