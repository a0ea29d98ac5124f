"""Helpers shared by the sender-authentication plugins (sender_permitted_from, dkim,
domainkeys, domainkeys_sign, dmarc): where signing keys live, the organizational
domain of a name, the message as the signers see it, and one Authentication-Results
entry per method and message.
"""

import os

from ..constants import LOGERROR, LOGINFO
from .extras import require


# -- signing keys: config/dkim/<domain>/ as qpsmtpd lays them out -----------------------
class SigningKey:
    """What signing for a domain needs: d= (domain), s= (selector), the key file."""

    def __init__(self, domain, selector, key_path, directory):
        self.domain, self.selector, self.key_path, self.directory = domain, selector, key_path, directory

    def private_key(self):
        with open(self.key_path, "rb") as fh:
            return fh.read()

    def __repr__(self):
        return f"SigningKey(d={self.domain}, s={self.selector}, {self.key_path})"


class SigningKeyError(Exception):
    """A key directory exists but cannot be used (no selector, key unreadable)."""


def signing_key(config_dirs, domain, subdir="dkim"):
    """The key for mail from `domain`: config/dkim/<domain>/, else the closest parent
    domain that has one (mail from a host of example.org is signed for example.org).

    A directory holds `selector` (first line: the selector in use) and the private key:
    `<selector>.private` when that file exists, else `private` (qpsmtpd's layout). Key
    rotation: put the new key beside the old one as `<new>.private`, publish it in DNS,
    then write `<new>` into `selector`; mail is signed with the new key from the next
    message on, without a restart. A symbolic link (config/dkim/client.example ->
    example.org) signs with the target's key and d= the target's name.

    Returns a SigningKey, None when no directory applies, or raises SigningKeyError.
    """
    labels = domain.lower().rstrip(".").split(".")
    for start in range(0, max(1, len(labels) - 1)):
        candidate = ".".join(labels[start:])
        for base in config_dirs:
            path = os.path.join(base, subdir, candidate)
            if os.path.isdir(path):
                return _key_in(path, candidate)
    return None


def key_to_sign_with(plugin, domain, config_dirs, subdir="dkim", missing="skip, no key for"):
    """signing_key() for a signing plugin, logging why a message goes unsigned (no
    domain, a broken key directory, no key: `missing` DOMAIN); the key or None."""
    if not domain:
        plugin.log(LOGINFO, "skip, no From or sender domain to sign for")
        return None
    try:
        key = signing_key(config_dirs, domain, subdir)
    except SigningKeyError as exc:
        plugin.log(LOGERROR, f"error, {exc}; not signed")
        return None
    if key is None:
        plugin.log(LOGINFO, f"{missing} {domain}")
    return key


def _key_in(path, name):
    signing_domain = os.path.basename(os.path.realpath(path)) if os.path.islink(path) else name
    try:
        with open(os.path.join(path, "selector"), encoding="utf-8") as fh:
            selector = next((line.strip() for line in fh if line.strip() and not line.startswith("#")), "")
    except OSError as exc:
        raise SigningKeyError(f"cannot read the selector of {path}: {exc.strerror}") from None
    if not selector or not all(part.replace("-", "").replace("_", "").isalnum()
                               for part in selector.split(".")):
        raise SigningKeyError(f"{path}/selector: '{selector}' is not a selector (a DNS label)")
    for key_name in (f"{selector}.private", "private"):
        key_path = os.path.join(path, key_name)
        if os.path.isfile(key_path):
            if not os.access(key_path, os.R_OK):
                raise SigningKeyError(f"cannot read the key {key_path}")
            return SigningKey(signing_domain, selector, key_path, path)
    raise SigningKeyError(f"no key in {path} (neither {selector}.private nor private)")


# -- organizational domains (RFC 7489 3.2) -------------------------------------------------
_psl = {}


def organizational_domain(name, list_file=None):
    """The registered domain of `name` by the Public Suffix List (publicsuffixlist's
    copy, or `list_file`, e.g. Debian's /usr/share/publicsuffix/public_suffix_list.dat):
    mail.example.co.uk -> example.co.uk. Unknown top-level domains count as public
    suffixes of one label (a.b.example.test -> example.test)."""
    name = name.lower().rstrip(".")
    psl = _psl.get(list_file)
    if psl is None:
        module = require("publicsuffixlist", "publicsuffixlist", "dmarc", "python3-publicsuffixlist")
        if list_file:
            with open(list_file, "rb") as fh:
                psl = module.PublicSuffixList(fh)
        else:
            psl = module.PublicSuffixList()
        _psl[list_file] = psl
    return psl.privatesuffix(name) or name


def aligned(domain, other, strict, list_file=None):
    """DMARC identifier alignment: the same name (strict), or the same organizational
    domain (relaxed)."""
    domain, other = domain.lower().rstrip("."), other.lower().rstrip(".")
    if domain == other:
        return True
    return not strict and organizational_domain(domain, list_file) == organizational_domain(other, list_file)


# -- the message, Authentication-Results ---------------------------------------------------
def message_bytes(transaction):
    """Header and body as on the wire (CRLF line ends): what signers hash."""
    return b"".join(transaction.iter_message(crlf=True))


def set_auth_result(notes, method, *texts):
    """Replace this message's Authentication-Results entries of `method` ("spf",
    "dkim" ...) with `texts`, so a check that runs again (a second MAIL) never leaves
    two answers."""
    kept = [t for t in notes.get("authentication_results") or []
            if t.split("=", 1)[0].strip().lower() != method]
    notes["authentication_results"] = kept + [str(t) for t in texts]


def printable(text, limit=200):
    """Text from DNS or a message, made safe for a log line or an SMTP reply."""
    clean = "".join(ch if " " <= ch <= "~" else "?" for ch in str(text))
    return clean if len(clean) <= limit else clean[:limit] + "..."
