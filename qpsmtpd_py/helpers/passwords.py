"""Password checks shared by the auth plugins (qpsmtpd's Qpsmtpd::Auth::validate_password).

One place compares a login attempt with what a backend stores: a clear-text
password, a crypt() hash ($1$, $5$, $6$, DES ...), or, for CRAM-MD5, the
HMAC-MD5 of the ticket keyed with the clear-text password. Comparisons take
constant time.
"""

import hashlib
import hmac
import warnings

from ..constants import DECLINED, DENY, LOGERROR, LOGINFO, OK

try:                                   # Python 3.13 removed crypt; crypt-r is the copy
    import crypt_r as _crypt
except ImportError:                    # pragma: no cover - depends on the Python version
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt as _crypt


def crypt_matches(attempt, crypted):
    """True when crypt(attempt, crypted) == crypted."""
    try:
        result = _crypt.crypt(attempt, crypted)
    except (OSError, ValueError):
        return False
    return bool(result) and hmac.compare_digest(result.encode(), crypted.encode())


def cram_md5_digest(password, ticket):
    """The hex HMAC-MD5 a CRAM-MD5 client sends for this password and ticket."""
    return hmac.new(password.encode(), ticket.encode(), hashlib.md5).hexdigest()


def validate_password(plugin, clear, crypted, attempt_clear, attempt_hash, method, ticket,
                      deny=DENY):
    """(code, message) for one attempt: OK on a match, `deny` for a wrong password,
    DECLINED when the user is unknown or the method cannot be checked (so later
    auth plugins may try). Logs one 'pass'/'fail'/'skip' line, never a password."""
    name = plugin.plugin_name.rsplit("/", 1)[-1]           # qpsmtpd shows the file name
    if not clear and not crypted:
        plugin.log(LOGINFO, "fail, no such user")
        return DECLINED, f"{name} - no such user"
    if attempt_hash is not None:
        if not clear:
            plugin.log(LOGINFO, f"skip, {method} needs the clear-text password")
            return DECLINED, name
        if not ticket:
            plugin.log(LOGERROR, "skip, missing CRAM-MD5 ticket")
            return DECLINED, name
        if hmac.compare_digest(cram_md5_digest(clear, ticket), attempt_hash.lower()):
            plugin.log(LOGINFO, "pass, hash match")
            return OK, name
    elif attempt_clear is not None:
        if clear and hmac.compare_digest(clear.encode(), attempt_clear.encode()):
            plugin.log(LOGINFO, "pass, clear match")
            return OK, name
        if crypted and crypt_matches(attempt_clear, crypted):
            plugin.log(LOGINFO, "pass, crypt match")
            return OK, name
    plugin.log(LOGINFO, "fail, wrong password")
    return deny, f"{name} - wrong password"
