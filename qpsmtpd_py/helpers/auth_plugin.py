"""AuthPlugin: the base of the plugins that check a user's password.

A backend plugin answers one question, and the base does the rest written once
for all of them: registering the auth-<mech> hooks, the log line of each
attempt, the hook's answer, and CRAM-MD5 for stores that hold the password.

    class AuthExample(AuthPlugin):
        def check(self, user, password):
            if not self.backend_up():
                raise AuthUnavailable("backend down")      # 454, the client retries
            return self.backend_says(user, password)       # True, False or None

`check` returns True (accepted), False (wrong password) or None (not this
plugin's user: unknown, or a name it cannot take; a later auth plugin may know
the user). A store that holds the password itself implements
`stored_password(user)` instead (clear text and/or a crypt() hash); the base then
also answers CRAM-MD5, as qpsmtpd's validate_password did. `skip_reason()` says
why the plugin cannot take part in this session at all (not configured, not on
this port).
"""

import hmac

from ..constants import DECLINED, DENY, DENYSOFT, LOGERROR, LOGINFO, OK
from .passwords import cram_md5_digest, crypt_matches
from ..plugin import Plugin


class AuthUnavailable(Exception):
    """The password store cannot answer now (down, time-out, misconfigured): the
    client gets `454 Temporary authentication failure` and may try again."""


class AuthPlugin(Plugin):
    #: SASL mechanisms answered; None: PLAIN and LOGIN, plus CRAM-MD5 when the
    #: plugin implements stored_password (CRAM-MD5 needs the clear-text password)
    mechanisms = None
    #: what a wrong password answers: DENY ends the auth chain (535); DECLINED lets
    #: a later auth plugin try the same credentials
    wrong_password = DENY

    def init(self, *args):
        super().init(*args)
        for mech in self.offered():
            self.register_hook("auth-" + mech.lower(), self.authenticate)

    @classmethod
    def offered(cls):
        if cls.mechanisms is not None:
            return tuple(cls.mechanisms)
        if cls.stored_password is not AuthPlugin.stored_password:
            return ("PLAIN", "LOGIN", "CRAM-MD5")
        return ("PLAIN", "LOGIN")

    @property
    def label(self):
        """The name in answers and logs: the file name, as qpsmtpd shows it."""
        return self.plugin_name.split(":", 1)[0].rsplit("/", 1)[-1]

    # -- what a backend implements --------------------------------------------------------
    def skip_reason(self):
        """Why this plugin stays out of this attempt (e.g. "not enabled on port 25"),
        or None. The attempt goes on to the next auth plugin."""
        return None

    def check(self, user, password):
        """True, False or None (see the module doc); AuthUnavailable when the
        backend cannot answer now. The default compares with stored_password."""
        stored = self.stored_password(user)
        if not stored or not any(stored):
            return None
        clear, crypted = stored
        if clear and hmac.compare_digest(clear.encode(), password.encode()):
            return True
        return bool(crypted) and crypt_matches(password, crypted)

    def stored_password(self, user):
        """(clear text or None, crypt() hash or None) of `user`, or None when the
        user is unknown. Implement this instead of check() in password stores."""
        return None

    # -- the hook --------------------------------------------------------------------------
    def authenticate(self, transaction, method, user, clear, digest, ticket):
        """The auth-<mech> hook: ask the backend, log one line, answer the engine."""
        reason = self.skip_reason()
        if reason:
            self.log(LOGINFO, f"skip, {reason}")
            return DECLINED, self.label
        try:
            if digest is not None:
                verdict = self._check_digest(user, digest, ticket)
            else:
                verdict = self.check(user, clear)
        except AuthUnavailable as exc:
            self.log(LOGERROR, f"error, {user}: {exc}")
            return DENYSOFT, f"{self.label} - {exc}"
        if verdict is True:
            self.log(LOGINFO, f"pass, {user} ({method})")
            return OK, self.label
        if verdict is False:
            self.log(LOGINFO, f"fail, {user}: wrong password ({method})")
            return self.wrong_password, f"{self.label} - wrong password"
        self.log(LOGINFO, f"skip, {user}: not known here ({method})")
        return DECLINED, self.label

    def _check_digest(self, user, digest, ticket):
        """CRAM-MD5: the client's HMAC of the ticket against the stored clear text."""
        stored = self.stored_password(user)
        if stored and not stored[0] and stored[1]:
            self.log(LOGINFO, f"skip, {user}: CRAM-MD5 needs the clear-text password")
        if not stored or not stored[0] or not ticket:
            return None
        return hmac.compare_digest(cram_md5_digest(stored[0], ticket), digest.lower())
