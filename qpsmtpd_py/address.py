"""RFC 5321 paths (<local@domain>): parse, format, compare; an Address carries notes.

The grammar is RFC 5321 4.1.2 with RFC 6531's UTF-8 extensions. Like qpsmtpd, an
unquoted local part may also hold empty atoms and spaces (<a..b@x>, <a.@x>,
<ask @x>); such addresses are accepted as if quoted and quoted again by format().
"""

import ipaddress
import re

_ATEXT = r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\u0080-\U0010FFFF]"
_ATOM = _ATEXT + "+"
_QCONTENT = r'(?:[\x20\x21\x23-\x5B\x5D-\x7E\u0080-\U0010FFFF]|\\[\x20-\x7E])'
_LABEL = r"(?:[A-Za-z0-9\u0080-\U0010FFFF](?:[A-Za-z0-9\-\u0080-\U0010FFFF]*[A-Za-z0-9\u0080-\U0010FFFF])?)"
_DOMAIN = rf"{_LABEL}(?:\.{_LABEL})*"
_LITERAL = r"\[[^\[\]\\\s]+\]"
_PATH_RE = re.compile(
    rf"(?P<route>@{_DOMAIN}(?:,@{_DOMAIN})*:)?"
    rf"(?:\"(?P<quoted>{_QCONTENT}*)\"|(?P<unquoted>{_ATOM}(?:{_ATEXT}|[. ])*))"
    rf"@(?P<domain>{_LITERAL}|{_DOMAIN})"
)
_NEEDS_QUOTE = re.compile(r"[^A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.\u0080-\U0010FFFF]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DISALLOWED_IN_DOMAIN = re.compile("[\u00a0\u1680\u2000-\u200f\u2028-\u202f\u205f-\u206f\u3000\ufeff\u00ad]")


def valid_address_literal(literal):
    """[1.2.3.4] or [IPv6:...] as RFC 5321 4.1.3 defines them."""
    inner = literal[1:-1]
    try:
        if inner[:5].lower() == "ipv6:":
            return isinstance(ipaddress.ip_address(inner[5:]), ipaddress.IPv6Address)
        parts = inner.split(".")
        return len(parts) == 4 and all(p.isdigit() and len(p) <= 3 and int(p) <= 255 for p in parts)
    except ValueError:
        return False


def canonify(path):
    """'<user@host>' -> (user, host, route or reason); user None when invalid.

    The null path gives ('', None) and a bare <postmaster> ('postmaster', None).
    """
    if not (path.startswith("<") and path.endswith(">")):
        return None, None, "missing delimiters"
    inner = path[1:-1]
    if inner == "":
        return "", None, "empty path"
    if inner.lower() == "postmaster":
        return "postmaster", None, "bare postmaster"
    if _CONTROL.search(inner):
        return None, None, "control character in path"
    match = _PATH_RE.fullmatch(inner)
    if not match:
        return None, None, "syntax error"
    domain = match.group("domain")
    if domain.startswith("["):
        if not valid_address_literal(domain):
            return None, None, "bad address literal"
    elif _DISALLOWED_IN_DOMAIN.search(domain + (match.group("route") or "")):
        return None, None, "disallowed in domain"
    if match.group("quoted") is not None:
        return re.sub(r"\\(.)", r"\1", match.group("quoted")), domain, match.group("route")
    return match.group("unquoted"), domain, match.group("route")


class Address:
    """A mail path. str() gives the bracketed form; .address the bare user@host."""

    __slots__ = ("user", "host", "notes", "route")

    def __init__(self, user=None, host=None, route=None):
        self.user = user
        self.host = host
        self.notes = {}
        self.route = route        # an ignored source route ('@a,@b:'), kept for policy checks

    @classmethod
    def parse(cls, text):
        """Parse '<...>' (or a bare 'user@host'); None when it is not a valid path."""
        if text is None:
            return cls()
        text = text.strip()
        if not text.startswith("<"):
            text = f"<{text}>"
        user, host, route = canonify(text)
        if user is None:
            return None
        if user == "" and host is None:
            return cls()
        return cls(user, host, route if route and route.startswith("@") else None)

    @property
    def is_null(self):
        return not self.user and self.host is None

    @property
    def address(self):
        """user@host without brackets ('' for the null sender)."""
        if self.user is None:
            return ""
        return self.user + ("@" + self.host if self.host is not None else "")

    def format(self):
        if self.user is None or (self.user == "" and self.host is None):
            return "<>"
        user = self.user
        at_host = "@" + self.host if self.host is not None else ""
        not_dot_string = user.startswith(".") or ".." in user or user.endswith(".") or (user == "" and at_host)
        if _NEEDS_QUOTE.search(user) or not_dot_string:
            escaped = re.sub(r'(["\\])', r"\\\1", user)
            return f'<"{escaped}"{at_host}>'
        return f"<{user}{at_host}>"

    @property
    def has_utf8(self):
        return any(part and not part.isascii() for part in (self.user, self.host))

    def sort_key(self):
        return ((self.host or "").lower(), self.user or "")

    def __str__(self):
        return self.format()

    def __repr__(self):
        return f"Address({self.format()!r})"

    def __eq__(self, other):
        if isinstance(other, str):
            other = Address.parse(other)
        if not isinstance(other, Address):
            return NotImplemented
        return self.format().lower() == other.format().lower()

    def __hash__(self):
        return hash(self.format().lower())

    def __lt__(self, other):
        return self.sort_key() < other.sort_key()
