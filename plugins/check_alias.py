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

from qpsmtpd_py.api import (
    DECLINED, DENY, LOGDEBUG, LOGERROR, LOGINFO, NO_MAILBOX, Bool, Domains, Keyword, Path,
    Plugin, Text, is_local_domain, parse_sendmail_aliases, user_candidates,
)


class CheckAlias(Plugin):
    arguments = (
        Keyword("file", Path(), "/etc/aliases", "the aliases file, re-read when it changes"),
        Keyword("domains", Domains(), None, "the domains to check (default: our own, as "
                "rcpt_ok sees them)"),
        Keyword("detail_sep", Text(), "+", "detail separators to cut the local part at "
                "(none: do not cut)", metavar="CHARS"),
        Keyword("users", Bool(), False, "also accept system accounts (getpwnam)"),
    )

    def register(self, *args):
        self.path = self.args["file"]
        self.domains = self.args["domains"] or None
        sep = self.args["detail_sep"]
        self.detail_sep = "" if sep.lower() == "none" else sep
        self.users = self.args["users"]

    def parse(self, text):
        return parse_sendmail_aliases(text, self.path, self.log)

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
            aliases = self.parsed_file(self.path, self.parse)
        except FileNotFoundError:
            aliases = None
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
