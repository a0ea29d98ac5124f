"""Alias files: /etc/aliases (sendmail format) for check_alias, and Peter Holzer's
address-pattern format for the aliases plugins (aliases_check, aliases_rewrite).

/etc/aliases:   name: target, target ...
  Continuation lines start with white space; `#` starts a comment line; names are
  local parts (case-insensitive, may be "quoted").

aliases (qpsmtpd config file):   PATTERN [(OPTIONS)]: ADDRESS, ADDRESS ...
  PATTERN   lp1,lp2@dom1,dom2   every local part at every domain listed;
            lp1,lp2             bare local parts: those local parts in "our" domains
                                (named in the file, or as the caller decides) and
                                without a domain (RCPT TO:<postmaster>)
  OPTIONS   opt1, opt2=value     per-recipient options (a bare option is True)
  ADDRESS   the expansion; an address that is itself an alias is expanded again
Lists are comma-separated and white space does not matter. An alias line that
cannot be parsed is logged with its file and line and skipped.
"""

import os

from ..constants import LOGWARN


# -- /etc/aliases -------------------------------------------------------------------------
def parse_sendmail_aliases(text, path="aliases", log=None):
    """{name (lower case): [targets]} from /etc/aliases text."""
    aliases = {}
    logical = []           # (lineno, line with its continuations)
    for lineno, raw in enumerate(text.splitlines(), 1):
        if raw.lstrip().startswith("#") or not raw.strip():
            continue
        if raw[:1] in (" ", "\t") and logical:
            logical[-1] = (logical[-1][0], logical[-1][1] + " " + raw.strip())
            continue
        logical.append((lineno, raw.strip()))
    for lineno, line in logical:
        name, sep, targets = _split_name(line)
        if not sep or not name:
            if log is not None:
                log(LOGWARN, f"{path}:{lineno}: no 'name:' at the start; line skipped")
            continue
        entry = [t.strip() for t in targets.split(",") if t.strip()]
        aliases.setdefault(name.lower(), entry)
    return aliases


def _split_name(line):
    if line.startswith('"'):
        end = line.find('"', 1)
        if end < 0:
            return "", "", ""
        name, rest = line[1:end], line[end + 1:].lstrip()
        return (name, ":", rest[1:]) if rest.startswith(":") else ("", "", "")
    return tuple(part.strip() for part in line.partition(":"))


class FileCache:
    """Re-read a file only when it changes; `parse(text, path)` builds the value."""

    def __init__(self, parse):
        self.parse = parse
        self.signature = None
        self.value = None

    def get(self, path):
        try:
            st = os.stat(path)
        except OSError:
            return None
        signature = (path, st.st_mtime_ns, st.st_size, st.st_ino)
        if signature != self.signature:
            with open(path, "rb") as fh:
                text = fh.read().decode("utf-8", "surrogateescape")
            self.value = self.parse(text, path)
            self.signature = signature
        return self.value


# -- Holzer's aliases file ------------------------------------------------------------------
class AliasTable:
    """Address patterns -> (targets, options); expand() resolves recursively."""

    def __init__(self, lines, log=None):
        self.exact = {}        # 'lp@dom' -> (targets, options)
        self.bare = {}         # 'lp'     -> (targets, options)
        self.domains = set()   # every domain named in a pattern
        for line in lines:
            try:
                self._add(line)
            except ValueError as exc:
                if log is not None:
                    log(LOGWARN, f"{getattr(line, 'origin', 'aliases')}: {exc}; line skipped")

    def _add(self, line):
        head, sep, tail = str(line).partition(":")
        if not sep:
            raise ValueError("no ':' between the alias and its expansion")
        options = {}
        if "(" in head:
            head, _p, opts = head.partition("(")
            if not opts.rstrip().endswith(")"):
                raise ValueError("options must be written (opt, opt=value)")
            options = parse_options(opts.rstrip()[:-1])
        targets = [t.strip() for t in tail.split(",") if t.strip()]
        if not targets:
            raise ValueError("empty expansion")
        for target in targets:
            if target.count("@") != 1 or target.startswith("@") or target.endswith("@"):
                raise ValueError(f"'{target}' is not an address user@domain")
        users, at, doms = head.strip().rpartition("@") if "@" in head else (head.strip(), "", "")
        users = [u.strip().lower() for u in users.split(",") if u.strip()]
        if not users:
            raise ValueError("no local part before '@'")
        value = ([t.lower() for t in targets], options)
        if not at:
            for user in users:
                self.bare.setdefault(user, value)
            return
        domains = [d.strip().lower() for d in doms.split(",") if d.strip()]
        if not domains:
            raise ValueError("no domain after '@'")
        for domain in domains:
            self.domains.add(domain)
            for user in users:
                self.exact.setdefault(f"{user}@{domain}", value)

    def is_ours(self, domain):
        """Do bare local parts apply in this domain? (No domain, or one named in the file.)"""
        return not domain or domain in self.domains

    def lookup(self, address, is_ours=None):
        """(targets, options, detail) for an address (user[+detail][@domain]), or None.

        Bare local-part entries apply when `is_ours(domain)` (default: no domain or a
        domain named in the file), so mail to postmaster@elsewhere is never taken."""
        is_ours = is_ours or self.is_ours
        user, _at, domain = address.lower().rpartition("@") if "@" in address else (address.lower(), "", "")
        base, plus, detail = user.partition("+")
        candidates = [(user, "")] + ([(base, detail)] if plus and base else [])
        for name, det in candidates:
            found = self.exact.get(f"{name}@{domain}") if domain else None
            if found is None and is_ours(domain):
                found = self.bare.get(name)
            if found is not None:
                return found[0], found[1], det
        return None

    def expand(self, address, is_ours=None, _path=frozenset()):
        """The final addresses (deduplicated, in order), keeping a +detail; an address
        that is not an alias, or that is already being expanded (a loop), is final."""
        address = address.lower()
        found = self.lookup(address, is_ours)
        if found is None or address in _path:
            return [address]
        targets, _options, detail = found
        out = []
        for target in targets:
            if detail:
                user, _at, domain = target.rpartition("@")
                if "+" not in user:
                    target = f"{user}+{detail}@{domain}"
            for final in self.expand(target, is_ours, _path | {address}):
                if final not in out:
                    out.append(final)
        return out


def parse_options(text):
    """'denysoft_greylist, spamassassin_reject_threshold=10' -> dict."""
    options = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        key, eq, value = item.partition("=")
        if not key.strip():
            raise ValueError(f"bad option '{item}'")
        options[key.strip()] = value.strip() if eq else True
    return options
