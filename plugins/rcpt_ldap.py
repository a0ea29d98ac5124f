"""rcpt_ldap - refuse recipients that are not in the LDAP directory.

Each recipient is looked up with an LDAP search; a recipient the directory does
not know is refused at RCPT, so no bounce for an unknown user is ever sent:

  550 5.1.1 Sorry, no mailbox here by that name. (#5.1.1)

A recipient that is found is left to the next plugin (rcpt_ok decides whether
the domain is ours), or accepted at once with `accept 1`.

Settings come from the config file `ldap` (one `key value` a line, shared with
auth/auth_ldap_bind), then from the plugin arguments (key/value pairs), which
win:
  ldap_uri URI          ldap://host:port or ldaps://host:port; default built from
                        ldap_host (127.0.0.1) and ldap_port (389)
  ldap_host, ldap_port  the qpsmtpd names of the same
  ldap_base DN          where to search (required), subtree scope
  ldap_bind_dn DN       bind as this DN (default: anonymous)
  ldap_bind_pw PW       its password; keep it in config/ldap (mode 0600), not in
                        config/plugins
  ldap_timeout S        seconds for connecting and for each answer (default 5;
                        whole seconds, fractions are rounded up)
  ldap_rcpt_filter F    the search filter, default qmail-ldap's
                        (|(mail=%a)(mailAlternateAddress=%a))
                        %a (or %s) = user@domain, %u = the local part, %d = the domain,
                        %% = a percent sign. Values are escaped (RFC 4515), so a
                        recipient like <*@example.com> matches nothing.
                        Extensions (user-ext@) match only if the filter allows it.
  accept 0|1            1: a recipient that is found is accepted (OK) and later rcpt
                        plugins are skipped; default 0 (DECLINED: rcpt_ok decides)
  reject 0|1            0: only log unknown recipients (default 1)
  reject_type perm|temp|disconnect   for unknown recipients, default perm

When the directory cannot be asked (server down, time-out, bind refused, a bad
filter or base), the recipient gets a temporary failure and the reason is logged
at LOGERROR; the sender retries later and nothing is lost:

  450 4.4.3 Temporary failure looking up the recipient, please try again later (#4.4.3)

Only recipients in our own domains (me, rcpthosts, morercpthosts, as rcpt_ok
sees them) are looked up; others are left to rcpt_ok, which refuses relaying. So
`accept 1` never accepts a foreign address that happens to be in the directory
(an address book entry, say). Also skipped (DECLINED): relay clients (they may
send anywhere; see relay) and a bare <postmaster> without domain. One connection per worker process is opened at the
first lookup and reused; it is reopened once when it broke.

Hooks: rcpt.
Examples:
  rcpt_ldap ldap_base ou=people,dc=example,dc=com
  rcpt_ldap ldap_uri ldaps://ldap.example.com ldap_base dc=example,dc=com ldap_rcpt_filter (&(objectClass=inetOrgPerson)(mail=%a))
"""

import math
import os
import re

from qpsmtpd_py.api import require_extra

ldap3 = require_extra("ldap3", "ldap3", "ldap", "python3-ldap3", "rcpt_ldap")
from ldap3.core.exceptions import LDAPException  # noqa: E402  (after the check above)
from ldap3.utils.conv import escape_filter_chars  # noqa: E402

from qpsmtpd_py.api import (
    DECLINED, DENYSOFT, LOGERROR, LOGINFO, NO_MAILBOX, OK, REJECT, REJECT_TYPE, Bool, Int,
    Keyword, Number, Plugin, Text, is_local_domain,
)

DEFAULT_FILTER = "(|(mail=%a)(mailAlternateAddress=%a))"
TEMPFAIL = "Temporary failure looking up the recipient, please try again later (#4.4.3)"
_PLACEHOLDER = re.compile(r"%([audsAUDS%])")


class LookupError_(Exception):
    """The directory could not answer; the text says why."""


class RcptLdap(Plugin):
    # None: not given here, so config/ldap's value (or the built-in default) applies
    arguments = (
        Keyword("ldap_uri", Text(r"(?i:ldaps?://).*", "ldap://host:port or ldaps://host:port"),
                None, "the server (default built from ldap_host and ldap_port)", metavar="URI"),
        Keyword("ldap_host", Text(), None, "server host (default 127.0.0.1)", metavar="HOST"),
        Keyword("ldap_port", Int(min=1, max=65535), None, "server port (default 389)"),
        Keyword("ldap_base", Text(), None, "where to search (required here or in config/ldap)",
                metavar="DN"),
        Keyword("ldap_bind_dn", Text(), None, "bind as this DN (default anonymous)", metavar="DN"),
        Keyword("ldap_bind_pw", Text(), None, "its password (better in config/ldap, mode 0600)",
                metavar="PW"),
        Keyword("ldap_timeout", Number(min=0, unit="seconds"), None, "for connecting and each "
                "answer (default 5, rounded up to whole seconds)"),
        Keyword("ldap_rcpt_filter", Text(r"\(.*\)", "a filter in parentheses"), None,
                "the search filter (%a %u %d %%); default qmail-ldap's", metavar="FILTER"),
        Keyword("accept", Bool(), None, "1: a recipient that is found is accepted (OK)"),
        REJECT.but(default=None),
        REJECT_TYPE,
    )

    def register(self, *args):
        settings = {}
        for line in self.config_list("ldap"):
            key, _, value = line.partition(" ")
            settings[key.strip().lower()] = value.strip()
        for key, value in self.args.items():
            if value is not None and key != "loglevel":
                settings[key] = value
        self.args = settings
        if not settings.get("ldap_base"):
            raise ValueError("ldap_base is required (in config/ldap or as an argument)")
        self.base = settings["ldap_base"]
        self.filter = settings.get("ldap_rcpt_filter") or DEFAULT_FILTER
        if not (self.filter.startswith("(") and self.filter.endswith(")")):
            raise ValueError(f"ldap_rcpt_filter '{self.filter}' must be in parentheses")
        try:
            self.timeout = max(1, math.ceil(float(settings.get("ldap_timeout") or 5)))
            port = int(settings.get("ldap_port") or 389)
        except ValueError as exc:
            raise ValueError(f"ldap_timeout/ldap_port: {exc}")
        self.uri = settings.get("ldap_uri") or f"ldap://{settings.get('ldap_host') or '127.0.0.1'}:{port}"
        if not re.match(r"^ldaps?://", self.uri, re.I):
            raise ValueError(f"ldap_uri '{self.uri}' must start with ldap:// or ldaps://")
        self.bind_dn = settings.get("ldap_bind_dn") or None
        self.bind_pw = settings.get("ldap_bind_pw") or None
        self.accept = str(settings.get("accept", "0")).lower() in ("1", "yes", "true", "on")
        self._ldap = None          # (pid, ldap3.Connection) of this worker process

    def hook_rcpt(self, transaction, rcpt, params=None):
        if self.connection.relay_client:
            self.log(LOGINFO, "skip, relay client")
            return DECLINED
        if rcpt.host is None:
            self.log(LOGINFO, f"skip, {rcpt} has no domain")
            return DECLINED
        if not is_local_domain(self, rcpt.host):
            self.log(LOGINFO, f"skip, {rcpt.host} is not one of our domains")
            return DECLINED
        search = self.make_filter(rcpt)
        try:
            found = self.lookup(search)
        except LookupError_ as exc:
            self.log(LOGERROR, f"error, cannot look up {rcpt.address} at {self.uri}: {exc}")
            return DENYSOFT, TEMPFAIL
        if found:
            self.log(LOGINFO, f"pass, {rcpt.address} found in {self.base}")
            return OK if self.accept else DECLINED
        return self.get_reject(NO_MAILBOX, f"{rcpt.address} not in the directory")

    def make_filter(self, rcpt):
        values = {"a": rcpt.address, "s": rcpt.address, "u": rcpt.user or "", "d": rcpt.host or ""}

        def fill(match):
            key = match.group(1).lower()
            return "%" if key == "%" else escape_filter_chars(values[key])
        return _PLACEHOLDER.sub(fill, self.filter)

    # -- the directory ------------------------------------------------------------------------
    def lookup(self, search):
        """True when the filter finds an entry; LookupError_ when it cannot be answered.
        A broken kept-open connection is replaced once."""
        for attempt in (1, 2):
            conn = self.ldap_connection()
            try:
                conn.search(self.base, search, search_scope=ldap3.SUBTREE, attributes=[],
                            size_limit=1, time_limit=self.timeout)
            except (LDAPException, OSError) as exc:
                self.drop_connection()
                if attempt == 2:
                    raise LookupError_(f"search failed: {exc}")
                continue
            code = conn.result.get("result")
            if code not in (0, 4):           # success, sizeLimitExceeded (more than one)
                self.drop_connection()
                if attempt == 2 or code in (32, 87):     # noSuchObject, filterError
                    raise LookupError_(f"search '{search}' in '{self.base}': "
                                       f"{conn.result.get('description')} "
                                       f"{conn.result.get('message') or ''}".strip())
                continue
            return any(r.get("type") == "searchResEntry" for r in conn.response or [])
        return False

    def ldap_connection(self):
        if self._ldap is not None and self._ldap[0] == os.getpid() and not self._ldap[1].closed:
            return self._ldap[1]
        self._ldap = None
        try:
            server = ldap3.Server(self.uri, get_info=ldap3.NONE, connect_timeout=self.timeout)
            conn = ldap3.Connection(server, user=self.bind_dn, password=self.bind_pw,
                                    receive_timeout=self.timeout, read_only=True,
                                    raise_exceptions=False, auto_referrals=False)
            if not conn.bind():
                description = conn.result.get("description") if conn.result else "no answer"
                conn.unbind()
                raise LookupError_(f"bind as {self.bind_dn or 'anonymous'} failed: {description}")
        except (LDAPException, OSError) as exc:
            raise LookupError_(f"cannot connect: {exc}")
        self._ldap = (os.getpid(), conn)
        return conn

    def drop_connection(self):
        if self._ldap is not None:
            try:
                self._ldap[1].unbind()
            except (LDAPException, OSError):
                pass
        self._ldap = None
