"""t_authbase - test plugin for the AuthPlugin base: a password store.

Arguments: `user:password` words (clear text), `user:$hash` (a crypt() hash only).
The user down@example.test makes the store unavailable.
"""

from qpsmtpd_py.api import AuthPlugin, AuthUnavailable


class TAuthBase(AuthPlugin):
    def register(self, *entries):
        self.entries = dict(entry.split(":", 1) for entry in entries)

    def stored_password(self, user):
        if user == "down@example.test":
            raise AuthUnavailable("store offline")
        secret = self.entries.get(user)
        if secret is None:
            return None
        return (None, secret) if secret.startswith("$") else (secret, None)
