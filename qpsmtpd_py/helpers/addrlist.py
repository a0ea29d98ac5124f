"""Address lists: the matching shared by badmailfrom, badrcptto, goodrcptto,
rcpt_regexp and their relatives.

A list file has one entry a line, `PATTERN [TEXT...]`. PATTERN is one of

  user@example.com     that address (compared without regard to case)
  @example.com         every address in that domain
  postmaster           that local part in any domain (only where a plugin allows
                       bare users; elsewhere the line is logged and skipped)
  /regex/              a regular expression, searched (not anchored) in the
                       lower-cased `user@host`, case-insensitively
  !/regex/             matches every address the regular expression does NOT match

Which lines are regular expressions depends on the plugin (`regex` argument):
  auto     (the badmailfrom/badrcptto family) as in qpsmtpd: a pattern containing
           one of  / ^ $ * + ! % ? \\  (so `!` alone catches bang paths and `%`
           the percent hack), and /re/. A pattern written as an address also
           matches that address itself: user+tag@example.com is a regular
           expression for qpsmtpd (matching usertag@...), and here also closes
           user+tag@example.com. '.', [ ] ( ) { } | alone do not make a pattern
           (user@[192.0.2.1] is an address), and a leading ! is a literal bang,
           as in qpsmtpd; negate with !/re/.
  slashes  (rcpt_regexp family) only /re/ and !/re/
  always   (badrcptto_patterns) every pattern is a regular expression
  never    literal entries only

TEXT is the rest of the line (the reply text of badmailfrom, the RETCODE and
comment of rcpt_regexp ...). A line that cannot be used (bad regular expression,
a plugin's `parse` refusing the text) is logged with its file and line number and
skipped; it never stops a session.
"""

import re

from ..constants import LOGWARN

#: qpsmtpd's test for "this badmailfrom/badrcptto line is a regular expression"
REGEX_CHARS = re.compile(r"[/^$*+!%?\\]")

#: the qmail-style answer for an unknown local recipient
NO_MAILBOX = "Sorry, no mailbox here by that name. (#5.1.1)"


class Pattern:
    """One compiled list pattern; matches(user, host) -> bool."""

    __slots__ = ("kind", "value", "negate", "token")

    def __init__(self, kind, value, token, negate=False):
        self.kind = kind          # 'address', 'domain', 'user' or 'regex'
        self.value = value        # lower-cased text, or a compiled regex
        self.token = token        # as written in the file
        self.negate = negate

    def matches(self, user, host=None):
        user = (user or "").lower()
        host = (host or "").lower()
        if self.kind == "regex":
            found = self.value.search(f"{user}@{host}" if host else user) is not None
            return found != self.negate
        if self.kind == "domain":
            return bool(host) and host == self.value
        if self.kind == "user":
            return user == self.value
        return (f"{user}@{host}" if host else user) == self.value

    def __repr__(self):
        return f"Pattern({self.kind}, {self.token!r})"


def compile_pattern(token, regex="auto", bare_user=False):
    """The Pattern for one list token; ValueError (with the reason) if unusable."""
    negate = False
    body = token
    slashed = _slashed(body)
    if regex != "never" and body.startswith("!") and _slashed(body[1:]):
        negate, body, slashed = True, body[1:], True
    if slashed and regex != "never":
        is_regex, body = True, body[1:-1]
    elif regex == "always":
        is_regex = True
    elif regex == "auto":
        is_regex = bool(REGEX_CHARS.search(body))
    else:
        is_regex = False
    if is_regex:
        try:
            compiled = re.compile(body, re.IGNORECASE)
        except re.error as exc:
            raise ValueError(f"bad regular expression '{body}': {exc}") from None
        if regex == "auto" and not slashed and "@" in body[1:]:
            compiled = _or_the_address(body, compiled)
        return Pattern("regex", compiled, token, negate)
    value = body.lower()
    if value.startswith("@"):
        if len(value) < 2 or "@" in value[1:]:
            raise ValueError(f"'{token}' is not an address, @domain or pattern")
        return Pattern("domain", value[1:], token)
    if "@" not in value:
        if not bare_user:
            raise ValueError(f"no @ sign in '{token}'")
        return Pattern("user", value, token)
    return Pattern("address", value, token)


def _slashed(text):
    return len(text) >= 2 and text.startswith("/") and text.endswith("/")


def _or_the_address(body, compiled):
    """The pattern `body`, or the address it is written as (user+tag@example.com)."""
    try:
        return re.compile(f"^{re.escape(body)}$|{body}", re.IGNORECASE)
    except re.error:             # (?flags) must stay first: keep the pattern alone
        return compiled


class Entry:
    """One usable line: its pattern, the rest of the line, and where it came from."""

    __slots__ = ("pattern", "text", "line", "data")

    def __init__(self, pattern, text, line, data=None):
        self.pattern = pattern
        self.text = text          # the rest of the line ('' if none)
        self.line = line          # the ConfigLine (.origin = "file:line")
        self.data = data          # what the plugin's parse() made of the text

    @property
    def token(self):
        return self.pattern.token


class AddressList:
    """The usable entries of a list file, in file order.

    `parse(text)` may turn the rest of each line into plugin data (raise ValueError
    to have the line logged and skipped). `log(level, message)` receives the
    complaints about bad lines.
    """

    def __init__(self, lines, log=None, regex="auto", bare_user=False, parse=None, name="list"):
        self.entries = []
        self.name = name
        for line in lines:
            parts = str(line).split(None, 1)
            if not parts:
                continue
            text = parts[1].strip() if len(parts) > 1 else ""
            try:
                pattern = compile_pattern(parts[0], regex=regex, bare_user=bare_user)
                data = parse(text) if parse else None
            except ValueError as exc:
                if log is not None:
                    log(LOGWARN, f"{_origin(line)}: {name}: {exc}; line skipped")
                continue
            self.entries.append(Entry(pattern, text, line, data))

    def __len__(self):
        return len(self.entries)

    def __bool__(self):
        return bool(self.entries)

    def match(self, user, host=None):
        """The first entry matching the address (an Address, or user and host)."""
        user, host = _parts(user, host)
        for entry in self.entries:
            if entry.pattern.matches(user, host):
                return entry
        return None

    def match_all(self, user, host=None):
        user, host = _parts(user, host)
        return [e for e in self.entries if e.pattern.matches(user, host)]


def address_list(plugin, name, lines=None, **options):
    """The AddressList of config file `name` for `plugin`, rebuilt only when the
    file changes (the config cache hands out the same list object until then)."""
    if lines is None:
        lines = plugin.config_list(name)
    cache = plugin.__dict__.setdefault("_addrlist_cache", {})
    cached = cache.get(name)
    if cached is not None and cached[0] is lines:
        return cached[1]
    result = AddressList(lines, log=plugin.log, name=name, **options)
    cache[name] = (lines, result)
    return result


def user_candidates(user, separators):
    """'a-b-c' with '-' -> ['a-b-c', 'a-b', 'a']: the local part, then each shorter
    form cut at an extension separator (qmail's user-ext, sendmail's user+detail)."""
    out = [user]
    if separators:
        for i in range(len(user) - 1, 0, -1):
            if user[i] in separators:
                out.append(user[:i])
    return out


def is_local_domain(plugin, host):
    """Is `host` one of ours: me, localhost, rcpthosts (.sub matches) or morercpthosts?"""
    host = (host or "").lower().rstrip(".")
    if not host:
        return False
    me = (plugin.config("me") or "").lower()
    if host in (me, "localhost"):
        return True
    for entry in plugin.config_list("rcpthosts"):
        entry = entry.strip().lower()
        if entry == host or (entry.startswith(".") and host.endswith(entry)):
            return True
    more = plugin.config_map("morercpthosts")
    return bool(more is not None and host in more)


def _parts(user, host):
    if host is None and hasattr(user, "user"):
        return user.user or "", user.host
    return user or "", host


def _origin(line):
    origin = getattr(line, "origin", None)
    return origin or "(config)"
