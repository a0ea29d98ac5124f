"""t_parse - test plugin for the *_parse hooks: offers parsers as qpsmtpd plugins do.

Arguments: the commands to parse (mail rcpt helo ehlo auth), plus
  crash    the parser raises
  junk     the parse hooks return DENY instead of (OK, parser) (logged, ignored)
MAIL/RCPT: RFC 821 only (parse_addr_withhelo's rule): `FROM:<a@b>` with nothing
after it, else `No parameters allowed in MAIL`; `FROM:<a@b> X=1` after the word
`params` on the plugin line is returned as a parameter dict instead.
HELO/EHLO: `host,word` splits at commas; a host `bad` is refused (`Bad host`).
AUTH: `PLAIN=<initial response>` is read as `PLAIN <initial response>`.
"""

import re

from qpsmtpd_py.api import DECLINED, DENY, OK, Plugin


class TParse(Plugin):
    def register(self, *words):
        self.words = set(words)
        for verb in ("mail", "rcpt", "helo", "ehlo", "auth"):
            if verb in self.words:
                self.register_hook(f"{verb}_parse", self.offer)

    def offer(self, transaction, *line):
        if "junk" in self.words:
            return DENY
        return OK, self.parse

    def parse(self, verb, line):
        if "crash" in self.words:
            raise RuntimeError("t_parse parser boom")
        if verb in ("helo", "ehlo"):
            words = line.split(",")
            if words[0] == "bad":
                return DENY, "Bad host"
            return (OK, *words)
        if verb == "auth":
            return (OK, *line.replace("=", " ", 1).split())
        keyword = "from" if verb == "mail" else "to"
        match = re.match(rf"(?i){keyword}:(<[^>]*>)\s*(.*)$", line)
        if not match:
            return DENY, "Syntax error in command"
        path, rest = match.groups()
        if rest and "params" in self.words:
            key, _, value = rest.partition("=")
            return OK, path, {key.upper(): value}
        if rest:
            return DENY, f"No parameters allowed in {verb.upper()}"
        return OK, path
