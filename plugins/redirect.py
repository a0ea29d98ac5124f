"""redirect - tell senders the new address of users who have moved away.

A local user who has left puts the new address into ~user/.redirect. Mail to
the user is then not forwarded (which would break SPF and hide the final
server's own checks) but refused with the RFC 5321 reply for exactly this case:

  551 User not local; please try <new@example.org>

and the sender's server bounces it with the new address; a person can resend.

Where .redirect is looked for:
  config/redirect_homes   (first line) a directory pattern: %u is the local part
                          (lower case, a +detail cut off), %d the domain, e.g.
                          /home/%u  or  /var/vmail/%d/%u
  otherwise               the home directory of the system account named like the
                          local part (getpwnam)
Only recipients in our domains (me, localhost, rcpthosts, morercpthosts) are
looked up, and only local parts made of a-z 0-9 . _ - (not starting with . or -)
and domains made of a-z 0-9 . - ; anything else is not decided.

~user/.redirect: the first line that is not empty or a # comment holds the new
address (user@domain, with or without <>). For safety the file must be a regular
file (not a symlink), owned by root or the owner of the directory it is in, and not
writable by group or others, like qmail's .qmail files; otherwise it is ignored
and the reason logged. A file without a valid address is logged and ignored.

Recipients without a .redirect are DECLINED. Hooks: rcpt (answers 551 itself and
returns DONE). Load it before rcpt_ok.
Example config/plugins line:  redirect
"""

import os
import pwd
import re
import stat

from qpsmtpd_py.api import (
    DECLINED, DONE, LOGDEBUG, LOGINFO, LOGWARN, Address, Plugin, is_local_domain,
)

_SAFE_USER = re.compile(r"[a-z0-9_][a-z0-9._-]*")
_SAFE_DOMAIN = re.compile(r"[a-z0-9][a-z0-9.-]*")


class Redirect(Plugin):
    arguments = ()                # none but loglevel: anything else stops start-up

    def home(self, user, domain):
        pattern = self.config("redirect_homes")
        if pattern:
            return pattern.strip().replace("%u", user).replace("%d", domain)
        try:
            return pwd.getpwnam(user).pw_dir
        except (KeyError, ValueError):
            return None

    def new_address(self, home):
        """The address in home/.redirect, or None (reasons logged)."""
        path = os.path.join(home, ".redirect")
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self.log(LOGWARN, f"ignoring {path}: {exc.strerror}")
            return None
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            try:
                owner = os.stat(home).st_uid
            except OSError:
                owner = None
            if not stat.S_ISREG(st.st_mode):
                self.log(LOGWARN, f"ignoring {path}: not a regular file")
                return None
            if st.st_uid not in (0, owner) or st.st_mode & 0o022:
                self.log(LOGWARN, f"ignoring {path}: writable by others or foreign owner")
                return None
            text = fh.read(4096).decode("utf-8", "replace")
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            address = Address.parse(line if line.startswith("<") else f"<{line}>")
            if address is None or address.is_null or not address.host:
                self.log(LOGWARN, f"ignoring {path}: '{line[:80]}' is not an address")
                return None
            return address
        return None

    def hook_rcpt(self, transaction, rcpt, params=None):
        if not rcpt.user or not rcpt.host:
            return DECLINED
        user = rcpt.user.lower().split("+", 1)[0]
        domain = rcpt.host.lower()
        if not (_SAFE_USER.fullmatch(user) and _SAFE_DOMAIN.fullmatch(domain)) \
                or ".." in user or ".." in domain or not is_local_domain(self, domain):
            return DECLINED
        home = self.home(user, domain)
        if not home:
            self.log(LOGDEBUG, f"no home for {user}")
            return DECLINED
        address = self.new_address(home)
        if address is None:
            return DECLINED
        self.log(LOGINFO, f"{rcpt.address} has moved to {address.address}")
        self.qp.respond(551, f"User not local; please try {address.format()}", enhanced="5.1.6")
        return DONE
