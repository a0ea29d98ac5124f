"""auth/auth_vpopmail - SMTP AUTH against vpopmail's own user files, the way
libvpopmail's vauth_getpw() reads them with vpopmail's default (cdb) backend.

For user@domain the domain's directory comes from vpopmail's qmail assign file
(VPOPMAIL/users/assign, lines `+domain-:domain:uid:gid:directory:-::`; alias domains
point at the real one's directory), and the user's entry from DIRECTORY/vpasswd:

    user:crypted-password:uid:gid:gecos:maildir:quota:clear-password

The crypted password is checked with crypt(); when vpopmail keeps clear-text
passwords (--enable-clear-passwd, the last field) CRAM-MD5 works too.

Arguments:  [vpopmail_dir DIR]   vpopmail's home, default /home/vpopmail
Hooks: auth-plain, auth-login, auth-cram-md5. An unknown domain or user is
DECLINED (a later auth plugin may know it); a wrong password is 535. When the files
cannot be read the client gets 454 (try again later). The server's user must be able
to read them (vpopmail's group, usually vchkpw).
Example:  auth/auth_vpopmail vpopmail_dir /var/vpopmail

For vpopmail with a MySQL backend use auth/auth_vpopmail_sql; for vpopmaild,
auth/auth_vpopmaild.

Differences from qpsmtpd: qpsmtpd's plugin needed the vpopmail Perl XS module and a
server running as the vpopmail user; this one reads the same files directly.
"""

import os

from qpsmtpd_py.api import AuthPlugin, AuthUnavailable, Keyword, Path


class AuthVpopmail(AuthPlugin):
    arguments = (
        Keyword("vpopmail_dir", Path(), "/home/vpopmail", "vpopmail's home directory"),
    )

    def stored_password(self, user):
        local, _, domain = user.lower().partition("@")
        if not local or not domain or "/" in local or ":" in local:
            return None
        directory = self.domain_dir(domain)
        if directory is None:
            return None
        path = os.path.join(directory, "vpasswd")
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as fh:
                for line in fh:
                    fields = line.rstrip("\n").split(":")
                    if fields[0].lower() == local and len(fields) >= 2:
                        clear = fields[7] if len(fields) > 7 and fields[7] else None
                        return clear, fields[1] or None
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise AuthUnavailable(f"{path}: {exc.strerror}")
        return None

    def domain_dir(self, domain):
        """The domain's directory from users/assign, or None for a domain not here."""
        path = os.path.join(self.args["vpopmail_dir"], "users", "assign")
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as fh:
                for line in fh:
                    fields = line.rstrip("\n").split(":")
                    if len(fields) >= 5 and fields[0] == f"+{domain}-":
                        return fields[4]
        except OSError as exc:
            raise AuthUnavailable(f"{path}: {exc.strerror}")
        return None
