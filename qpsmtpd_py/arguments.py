"""Declared plugin arguments: a plugin states once which words its config/plugins
line may hold, and the loader parses them before the plugin runs.

    class Tarpit(Plugin):
        arguments = (
            Keyword("after", Int(min=1), 1, "the tarpit starts after the N-th error"),
            Keyword("delay", Number(min=0), 1.0, "the first delay, in seconds"),
        )

`self.args` then holds every declared name with its parsed value (the default
when the line did not give it; a default written as a string is parsed like a
config word). An unknown keyword, a keyword without its value,
a missing required argument or a bad value raises ArgumentError, which the
loader turns into a ConfigError naming config/plugins and the line, so the
server never starts with a setting it would silently ignore. `loglevel` is
accepted by every plugin. `qpsmtpd-doc NAME` lists the declarations.

A config line is read left to right: a word that is a declared keyword (any
case) takes the next word as its value, a declared flag stands alone, any other
word fills the next positional argument. Positional and keyword words may
therefore be mixed (`queue/smtp-forward HOST xclient 2525`), as qpsmtpd's own
plugins allowed.
"""

import difflib
import ipaddress
import re

from .constants import log_level


_HOSTNAME = re.compile(r"[\w.-]+")


class ArgumentError(ValueError):
    """A config/plugins line does not fit the plugin's declared arguments."""


# -- value types -------------------------------------------------------------------------
class Type:
    """Turns the word from config/plugins into a value; `what` describes the
    accepted words for error messages and qpsmtpd-doc."""

    what = "a word"
    metavar = "VALUE"            # how usage lines show the value: `wait N`

    def parse(self, text):
        return text

    def __str__(self):
        return self.what


class Text(Type):
    """Any word, or one matching `pattern` (a full match), described by `what`."""

    metavar = "TEXT"

    def __init__(self, pattern=None, what=None):
        self.pattern = re.compile(pattern) if pattern else None
        self.what = what or ("text" if pattern is None else f"text matching {pattern}")

    def parse(self, text):
        if self.pattern is not None and not self.pattern.fullmatch(text):
            raise ValueError(f"expected {self.what}")
        return text


class Path(Text):
    """A file or directory name (not checked for existence: it may appear later)."""

    metavar = "PATH"

    def __init__(self, pattern=None, what="path"):
        super().__init__(pattern, what)


class Int(Type):
    metavar = "N"

    def __init__(self, min=None, max=None):
        self.min, self.max = min, max

    @property
    def what(self):
        return "integer" + _range_text(self.min, self.max)

    def parse(self, text):
        if not re.fullmatch(r"[+-]?\d+", text):
            raise ValueError(f"expected an {self.what}")
        return _in_range(int(text), self.min, self.max, self.what)


class Number(Type):
    """A decimal number (fractions allowed), e.g. seconds."""

    metavar = "N"

    def __init__(self, min=None, max=None, unit=""):
        self.min, self.max, self.unit = min, max, unit

    @property
    def what(self):
        unit = f" ({self.unit})" if self.unit else ""
        return "number" + _range_text(self.min, self.max) + unit

    def parse(self, text):
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"expected a {self.what}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"expected a {self.what}")
        return _in_range(value, self.min, self.max, self.what)


TRUE_WORDS = ("1", "yes", "true", "on")
FALSE_WORDS = ("0", "no", "false", "off")


class Bool(Type):
    what = metavar = "0|1"

    def parse(self, text):
        word = text.lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise ValueError("expected 0 or 1 (also yes/no, true/false, on/off)")


class Choice(Type):
    """One of `values` (case-insensitive); the value is the declared spelling.
    `aliases` maps more words to one of the values ({'hard': 'perm'})."""

    def __init__(self, *values, aliases=None):
        self.values = values
        self.lookup = {v.lower(): v for v in values}
        self.lookup.update({k.lower(): v for k, v in (aliases or {}).items()})
        self.aliases = dict(aliases or {})

    @property
    def what(self):
        return "|".join(self.values)

    @property
    def metavar(self):
        return self.what if len(self.what) <= 24 else "WORD"

    def parse(self, text):
        try:
            return self.lookup[text.lower()]
        except KeyError:
            raise ValueError(f"expected one of {', '.join(self.values)}") from None


class LogLevel(Type):
    what = "log level (0-7 or LOGDEBUG, LOGINFO ...)"
    metavar = "LEVEL"

    def parse(self, text):
        level = log_level(text)
        if level is None:
            raise ValueError(f"expected a {self.what}")
        return level


class Domains(Type):
    """Comma-separated domain names -> frozenset of lower-case names."""

    what = "comma-separated domains"
    metavar = "D1,D2"

    def parse(self, text):
        return frozenset(d.strip().lower() for d in text.split(",") if d.strip())


class Host(Type):
    """A next hop: a host name or an IP address (`[::1]` brackets allowed), and with
    sockets=True also an absolute unix socket path. Returns the name, the IP in its
    canonical form, or the path."""

    metavar = "HOST"

    def __init__(self, sockets=False):
        self.sockets = sockets
        self.what = "host name, IP address" + (" or /socket/path" if sockets else " ([::1] for IPv6)")
        if sockets:
            self.metavar = "HOST|/SOCKET"

    def parse(self, text):
        if self.sockets and text.startswith("/"):
            return text
        host = text.strip("[]")
        try:
            return str(ipaddress.ip_address(host))
        except ValueError:
            pass
        if not _HOSTNAME.fullmatch(host):
            raise ValueError(f"expected a {self.what}")
        return host


class Checked(Type):
    """A word checked by the plugin's own function, which returns the value or
    raises ValueError saying what is wrong."""

    def __init__(self, parse, what, metavar="VALUE"):
        self.func, self.what, self.metavar = parse, what, metavar

    def parse(self, text):
        return self.func(text)


def _range_text(low, high):
    if low is not None and high is not None:
        return f" {low:g}-{high:g}"
    if low is not None:
        return f" >= {low:g}"
    if high is not None:
        return f" <= {high:g}"
    return ""


def _in_range(value, low, high, what):
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"expected an {what}" if what.startswith("integer") else f"expected a {what}")
    return value


# -- declarations ------------------------------------------------------------------------
class Arg:
    """One declared argument; build it with Keyword, Positional, Flag or AnyKeyword."""

    kind = "keyword"

    def __init__(self, name, type=None, default=None, help="", *, aliases=(), required=False,
                 repeat=False, many=False, rest=False, keyword=False, metavar=None):
        self.name = name
        self.metavar = metavar
        self.type = type or Text()
        self.default = default
        self.help = help
        self.aliases = tuple(aliases)
        self.required = required
        self.repeat = repeat        # keyword given several times -> list of values
        self.many = many            # positional: every free word -> list
        self.rest = rest            # positional: this word and all after it, joined
        self.keyword = keyword      # positional that may also be written `name VALUE`

    def but(self, **changes):
        """A copy with some fields changed: REJECT_TYPE.but(default="disconnect")."""
        copy = object.__new__(type(self))
        copy.__dict__.update(self.__dict__, **changes)
        return copy

    def names(self):
        return (self.name,) + self.aliases

    def usage(self):
        """How the argument is written: 'wait N', '[max]', 'xclient', 'COMMAND FILE'."""
        if self.kind == "flag":
            return self.name
        value = self.metavar or self.type.metavar
        if self.kind == "positional":
            text = self.name + (" ..." if self.many or self.rest else "")
            return text if self.required else f"[{text}]"
        return f"{self.name} {value}"

    def __repr__(self):
        return f"<{type(self).__name__} {self.name}>"


class Keyword(Arg):
    """`name VALUE` anywhere on the line."""

    kind = "keyword"


class Positional(Arg):
    """A word without a keyword, in declaration order. many=True collects every
    remaining free word (a list); rest=True takes this word and everything after
    it as one text (a file name or command with spaces)."""

    kind = "positional"


class Flag(Arg):
    """A word standing alone (`reopen`); its value is True when present."""

    kind = "flag"

    def __init__(self, name, help="", **kw):
        super().__init__(name, Bool(), False, help, **kw)


class AnyKeyword(Arg):
    """Keywords the plugin does not know in advance (help's `COMMAND FILE`): every
    other `key value` pair whose key matches `key` goes into a dict."""

    kind = "any"

    def __init__(self, name, type=None, help="", key=r"\w+", **kw):
        super().__init__(name, type, None, help, **kw)
        self.key = re.compile(key)


#: accepted by every plugin: its own log level (`loglevel 7`, `+1`, `-1`, LOGINFO)
def _plugin_loglevel(text):
    if (text[:1] in "+-" and text[1:].isdigit()) or log_level(text) is not None:
        return text
    raise ValueError("expected a log level (0-7, LOGINFO ...) or +N/-N")


LOGLEVEL = Keyword("loglevel", Checked(_plugin_loglevel, "N, +N, -N or a level name (LOGINFO ...)",
                                       "LEVEL"),
                   None, "this plugin's log level: an absolute level, or +N/-N relative to "
                   "the server's (every plugin)")

#: Plugin.get_reject's switch (qpsmtpd's `reject`)
REJECT = Keyword("reject", Choice("0", "1", "naughty", aliases={
    "no": "0", "false": "0", "off": "0", "yes": "1", "true": "1", "on": "1"}), "1",
    "1 refuses, 0 only logs, naughty leaves the refusal to the naughty plugin")

#: Plugin.get_reject_type's kind of refusal (qpsmtpd's `reject_type`); None: the plugin's default
REJECT_TYPE = Keyword("reject_type", Choice("perm", "temp", "disconnect", "temp_disconnect",
                                            aliases={"hard": "perm", "soft": "temp"}), None,
                      "perm (5xx), temp (4xx), disconnect (5xx and close), temp_disconnect")


def with_loglevel(declared):
    """The declarations plus the standard loglevel keyword unless redeclared."""
    declared = tuple(declared)
    if any(arg.name == "loglevel" for arg in declared):
        return declared
    return declared + (LOGLEVEL,)


# -- the parser ---------------------------------------------------------------------------
class Parsed(dict):
    """self.args: name -> value. `given` holds the names the line set; `raw` the
    words as written (for loglevel, whose value the loader applies)."""

    def __init__(self):
        super().__init__()
        self.given = set()
        self.raw = {}


def parse_arguments(plugin, declared, words):
    """Parse the words after the plugin name; raises ArgumentError naming the plugin,
    the argument and what it accepts."""
    declared = with_loglevel(declared)
    keywords = {}
    for arg in declared:
        if arg.kind in ("keyword", "flag") or (arg.kind == "positional" and arg.keyword):
            for name in arg.names():
                keywords[name.lower()] = arg
    positionals = [a for a in declared if a.kind == "positional"]
    catch_all = next((a for a in declared if a.kind == "any"), None)

    result = Parsed()
    for arg in declared:
        default = arg.default
        if arg.kind == "any":
            default = {}
        elif arg.repeat or arg.many:
            default = list(default or ())
        elif isinstance(default, str):
            default = arg.type.parse(default)     # a default written as in config/plugins
        result[arg.name] = default

    words = [str(w) for w in words]
    i = 0
    while i < len(words):
        word = words[i]
        arg = keywords.get(word.lower())
        if arg is not None and arg.kind == "flag":
            _store(plugin, result, arg, True, word)
            i += 1
            continue
        if arg is not None:
            if i + 1 >= len(words):
                raise ArgumentError(f"{plugin}: '{word}' needs a value ({arg.name}: {arg.type.what})"
                                    f"{_pairs_hint(words, positionals)}")
            _store(plugin, result, arg, _value(plugin, arg, words[i + 1]), words[i + 1])
            i += 2
            continue
        slot = next((a for a in positionals if a.many or a.name not in result.given), None)
        if slot is not None and slot.rest:
            text = " ".join(words[i:])
            _store(plugin, result, slot, _value(plugin, slot, text), text)
            break
        if slot is not None:
            _store(plugin, result, slot, _value(plugin, slot, word, keywords=keywords), word)
            i += 1
            continue
        if catch_all is not None and catch_all.key.fullmatch(word):
            if i + 1 >= len(words):
                raise ArgumentError(f"{plugin}: '{word}' needs a value ({catch_all.name}: "
                                    f"{catch_all.type.what}){_pairs_hint(words, positionals)}")
            result[catch_all.name][word.lower()] = _value(plugin, catch_all, words[i + 1], word)
            result.given.add(catch_all.name)
            i += 2
            continue
        raise ArgumentError(_unknown(plugin, declared, word, positionals))

    missing = [a for a in declared if a.required and a.name not in result.given]
    if missing:
        arg = missing[0]
        raise ArgumentError(f"{plugin}: missing argument {arg.usage().strip('[]')}"
                            f" ({arg.help or arg.type.what}); usage: {usage(plugin, declared)}")
    return result


def _value(plugin, arg, text, name=None, keywords=()):
    try:
        return arg.type.parse(text)
    except ValueError as exc:
        reason = str(exc) or f"expected {arg.type.what}"
        close = difflib.get_close_matches(text.lower(), keywords, n=1)
        hint = f"; did you mean the keyword '{close[0]}'?" if close else ""
        raise ArgumentError(f"{plugin}: {name or arg.name} '{text}': {reason}{hint}") from None


def _store(plugin, result, arg, value, text):
    if arg.name in result.given and not (arg.repeat or arg.many):
        raise ArgumentError(f"{plugin}: {arg.name} is given twice ('{result.raw[arg.name]}' and "
                            f"'{text}')")
    if arg.repeat or arg.many:
        if arg.name not in result.given:
            result[arg.name] = []         # the first given value replaces the default
        result[arg.name].append(value)
    else:
        result[arg.name] = value
    result.given.add(arg.name)
    result.raw[arg.name] = text


def _pairs_hint(words, positionals):
    if positionals or len(words) % 2 == 0:
        return ""
    return (f"; arguments come in keyword/value pairs, the line has {len(words)} "
            f"word{'s' if len(words) > 1 else ''}")


def _unknown(plugin, declared, word, positionals):
    names = sorted(name for a in declared if a.kind != "positional" or a.keyword
                   for name in a.names() if a.kind != "any")
    if positionals:
        return (f"{plugin}: unexpected argument '{word}' (all positional arguments are given); "
                f"usage: {usage(plugin, declared)}")
    close = difflib.get_close_matches(word.lower(), names, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return (f"{plugin}: unknown argument keyword '{word}'{hint} "
            f"({plugin} accepts: {', '.join(names)})")


def usage(plugin, declared):
    """'earlytalker [wait VALUE] [reject VALUE] ...' for messages."""
    parts = [a.usage() if a.kind == "positional" else f"[{a.usage()}]"
             for a in with_loglevel(declared)]
    return " ".join([plugin] + parts)


def describe(declared):
    """Lines for qpsmtpd-doc: each argument with its accepted values, default and help."""
    lines = []
    for arg in with_loglevel(declared):
        if arg.kind == "flag":
            accepted = "a word on its own"
        elif arg.kind == "any":
            accepted = f"any other keyword ({arg.key.pattern}) with a {arg.type.what}"
        else:
            accepted = arg.type.what
        notes = []
        if arg.kind == "positional":
            notes.append("positional" + (", also as a keyword" if arg.keyword else ""))
        if arg.repeat:
            notes.append("repeatable")
        if arg.aliases:
            notes.append("also written " + ", ".join(arg.aliases))
        if arg.required:
            notes.append("required")
        elif arg.kind not in ("flag", "any"):
            notes.append(f"default {_default_text(arg.default)}")
        lines.append(f"  {arg.usage():24} {accepted}; {'; '.join(notes)}".rstrip("; "))
        if arg.help:
            lines.append(f"  {'':24} {arg.help}")
    return lines


def _default_text(value):
    if value is None or value == [] or value == ():
        return "none"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value == int(value):
        return str(int(value))
    if isinstance(value, (list, tuple, set, frozenset)):
        return " ".join(str(v) for v in value)
    return str(value)
