"""auth/auth_flat_file - SMTP AUTH against a clear-text password file.

Config file flat_auth_pw: one `user@domain:password` a line (the password is
everything after the first colon; user names match case-insensitively):

  alice@example.com:s3cret

Hooks: auth-plain, auth-login, auth-cram-md5 (the clear-text file makes CRAM-MD5
possible). Unknown users and user names without a domain are DECLINED (a later
auth plugin may know them); a wrong password is DENY. Keep the file mode 0600.

Example config/plugins line:  auth/auth_flat_file
"""

from qpsmtpd_py.api import AuthPlugin


class AuthFlatFile(AuthPlugin):
    arguments = ()

    def stored_password(self, user):
        """(clear-text password, None) of `user`, or None."""
        local, _, domain = user.partition("@")
        if not local or not domain:
            return None                     # qpsmtpd's rule: user@domain only
        wanted = user.lower()
        for line in self.config_list("flat_auth_pw"):
            name, sep, password = line.partition(":")
            if sep and name.strip().lower() == wanted:
                return password, None
        return None
