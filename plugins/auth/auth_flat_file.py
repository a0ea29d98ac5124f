"""auth/auth_flat_file - SMTP AUTH against a clear-text password file.

Config file flat_auth_pw: one `user@domain:password` a line (the password is
everything after the first colon; user names match case-insensitively):

  alice@example.com:s3cret

Hooks: auth-plain, auth-login, auth-cram-md5 (the clear-text file makes CRAM-MD5
possible). Unknown users and user names without a domain are DECLINED (a later
auth plugin may know them); a wrong password is DENY. Keep the file mode 0600.

Example config/plugins line:  auth/auth_flat_file
"""

from qpsmtpd_py.constants import DECLINED, LOGINFO
from qpsmtpd_py.passwords import validate_password
from qpsmtpd_py.plugin import Plugin


class AuthFlatFile(Plugin):
    def hook_auth_plain(self, transaction, method, user, clear, digest, ticket):
        return self.authenticate(method, user, clear, digest, ticket)

    hook_auth_login = hook_auth_plain
    hook_auth_cram_md5 = hook_auth_plain

    def authenticate(self, method, user, clear, digest, ticket):
        local, _, domain = user.partition("@")
        if not local or not domain:
            self.log(LOGINFO, f"fail, invalid user name (no domain): {user}")
            return DECLINED
        stored = self.lookup(user)
        return validate_password(self, stored, None, clear, digest, method, ticket)

    def lookup(self, user):
        """The clear-text password of `user`, or None."""
        wanted = user.lower()
        for line in self.config_list("flat_auth_pw"):
            name, sep, password = line.partition(":")
            if sep and name.strip().lower() == wanted:
                return password
        return None
