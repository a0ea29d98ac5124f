"""check_validrcptto_cdb - refuse unknown local recipients at RCPT, using a cdb
file of valid addresses (John Simpson's validrcptto.cdb, usually rebuilt from
cron by mkvalidrcptto).

Keys of the cdb (values are ignored), lower case:
  user@example.com           a valid address
  @example.com               catch-all: every address of example.com is valid
  user-default@example.com   from a .qmail-user-default file: user-ANYTHING@example.com
                             (and user-a-b@... tries user-a-b, user-a-default, user-default)
A recipient is valid when its address, one of its -default forms or its domain's
catch-all is a key. Otherwise, if the cdb has keys for the recipient's domain, it
is refused

  550 Sorry, no mailbox here by that name. (#5.1.1)

and if the domain does not appear in the cdb at all the plugin does not decide
(DECLINED: rcpt_ok still refuses relaying for domains that are not ours). The
cdb is re-read when it changes (cdb files are replaced by rename).

Arguments:
  [file] PATH   the cdb file: an absolute path or a name in the config dirs.
                Default: validrcptto.cdb in the config dirs ($QPSMTPD_CONFIG,
                ./config, /var/qmail/control)
  ext_sep C     the qmail extension separator (default -)
A missing or unreadable cdb is logged and every recipient DECLINED (fail open).
Recipients without a host (<postmaster>) are not checked.

Building a cdb by hand with tinycdb:
  printf 'alice@example.com\\n@catchall.example\\nbob-default@example.com\\n' \\
    | cdb -c -m /var/qmail/control/validrcptto.cdb

Hooks: rcpt. Load it before rcpt_ok.
Example config/plugins line:  check_validrcptto_cdb /var/qmail/control/validrcptto.cdb
"""

import os

from qpsmtpd_py.api import (
    CDB, DECLINED, DENY, LOGERROR, LOGINFO, NO_MAILBOX, Keyword, Path, Plugin, Positional,
    Text,
)


class CheckValidRcptToCdb(Plugin):
    arguments = (
        Positional("file", Path(), None, "the cdb: an absolute path or a name in the config "
                   "dirs (default validrcptto.cdb there)", keyword=True),
        Keyword("ext_sep", Text(r".", "one character"), "-", "the qmail extension separator"),
    )

    def register(self, *args):
        self.file = self.args["file"]
        self.ext_sep = self.args["ext_sep"]
        self.cache = {"signature": None, "cdb": None, "domains": frozenset()}

    def path(self):
        if self.file is None:
            return self.app.config.path("validrcptto.cdb")
        if os.path.isabs(self.file):
            return self.file
        return self.app.config.path(self.file) or os.path.abspath(self.file)

    def database(self):
        """(CDB, set of domains with keys) or (None, None) when unreadable."""
        path = self.path()
        try:
            st = os.stat(path) if path else None
        except OSError:
            st = None
        if st is None:
            self.log(LOGERROR, f"cannot read {path or 'validrcptto.cdb'}: no such file; not checking")
            return None, None
        signature = (path, st.st_mtime_ns, st.st_size, st.st_ino)
        if self.cache["signature"] != signature:
            try:
                cdb = CDB(path)
                domains = frozenset(k.rpartition(b"@")[2].decode("utf-8", "replace")
                                    for k in cdb.keys() if b"@" in k)
            except (OSError, ValueError, IndexError) as exc:
                self.log(LOGERROR, f"cannot read {path}: {exc}; not checking")
                return None, None
            self.cache.update(signature=signature, cdb=cdb, domains=domains)
        return self.cache["cdb"], self.cache["domains"]

    def candidates(self, user, domain):
        yield f"{user}@{domain}"
        parts = user.split(self.ext_sep)
        for i in range(len(parts) - 1, 0, -1):
            yield f"{self.ext_sep.join(parts[:i])}{self.ext_sep}default@{domain}"
        yield f"@{domain}"

    def hook_rcpt(self, transaction, rcpt, params=None):
        if not rcpt.user or not rcpt.host:
            return DECLINED
        cdb, domains = self.database()
        if cdb is None:
            return DECLINED
        user, domain = rcpt.user.lower(), rcpt.host.lower()
        for key in self.candidates(user, domain):
            if key in cdb:
                self.log(LOGINFO, f"pass, {key} is in validrcptto")
                return DECLINED
        if domain not in domains:
            self.log(LOGINFO, f"skip, {domain} is not in validrcptto")
            return DECLINED
        self.log(LOGINFO, f"fail, {user}@{domain} is not a valid recipient")
        return DENY, NO_MAILBOX
