"""check_alias - refuse local recipients that are not in the local aliases file.

The aliases file has the sendmail / Postfix `/etc/aliases` format:
  # comment
  postmaster: root
  root:       alice
  sales:      alice, bob,
              carol                  (continuation lines start with white space)
  "odd name": alice
Names are local parts, compared case-insensitively; the targets are not looked at.

For recipients in our domains, the local part (and, for user+detail, the part
before the +) must be an alias name, else

  550 Sorry, no mailbox here by that name. (#5.1.1)

Known recipients are DECLINED, so rcpt_ok still decides. Recipients in other
domains, and <postmaster> without a domain, are not decided (DECLINED).

Arguments (key/value):
  file PATH         the aliases file (default /etc/aliases); re-read when it changes.
                    A missing file is logged and nobody is refused (fail open).
  domains D1,D2     the domains to check (default: me, localhost, rcpthosts and
                    morercpthosts, as rcpt_ok sees them)
  detail_sep CHARS  detail separators to cut the local part at (default +;
                    `detail_sep -+` also finds user-ext; `detail_sep none` disables)
  users 1           also accept system accounts (getpwnam), like a local MTA does

Hooks: rcpt. Load it before rcpt_ok.
Example config/plugins line:  check_alias file /etc/aliases users 1
"""

import pwd

from qpsmtpd_py.addrlist import NO_MAILBOX, is_local_domain, user_candidates
from qpsmtpd_py.aliases import FileCache, parse_sendmail_aliases
from qpsmtpd_py.constants import DECLINED, DENY, LOGDEBUG, LOGERROR, LOGINFO
from qpsmtpd_py.plugin import Plugin


class CheckAlias(Plugin):
    def register(self, *args):
        super().register(*args)
        if args and not self.args:
            raise ValueError("arguments must be key/value pairs (file PATH ...)")
        self.path = str(self.args.get("file", "/etc/aliases"))
        domains = self.args.get("domains")
        self.domains = {d.strip().lower() for d in str(domains).split(",") if d.strip()} \
            if domains else None
        sep = str(self.args.get("detail_sep", "+"))
        self.detail_sep = "" if sep.lower() == "none" else sep
        self.users = str(self.args.get("users", "0")) not in ("0", "", "no")
        self.cache = FileCache(lambda text, path: parse_sendmail_aliases(text, path, self.log))

    def is_ours(self, domain):
        if self.domains is not None:
            return domain in self.domains
        return is_local_domain(self, domain)

    def known(self, aliases, name):
        if name in aliases:
            return True
        if self.users:
            try:
                pwd.getpwnam(name)
                return True
            except (KeyError, ValueError):
                pass
        return False

    def hook_rcpt(self, transaction, rcpt, params=None):
        if not rcpt.user or not rcpt.host or not self.is_ours(rcpt.host.lower()):
            return DECLINED
        try:
            aliases = self.cache.get(self.path)
        except OSError as exc:
            aliases = None
            self.log(LOGERROR, f"cannot read {self.path}: {exc}")
        if aliases is None:
            self.log(LOGERROR, f"no aliases file {self.path}; not checking")
            return DECLINED
        for name in user_candidates(rcpt.user.lower(), self.detail_sep):
            if self.known(aliases, name):
                self.log(LOGDEBUG, f"pass, {name} is known")
                return DECLINED
        self.log(LOGINFO, f"fail, {rcpt.user} is not in {self.path}")
        return DENY, NO_MAILBOX
