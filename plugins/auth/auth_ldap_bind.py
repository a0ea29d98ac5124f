"""auth/auth_ldap_bind - SMTP AUTH by binding to an LDAP directory as the user.

Settings come from the config file `ldap` (one `key value` a line) and are
overridden by `key value` pairs on the plugin line:

  ldap_host              server, default 127.0.0.1
  ldap_port              default 389; 636 means LDAPS
  ldap_base              search base (required), e.g. dc=example,dc=com
  ldap_timeout           seconds, default 5
  ldap_auth_filter_attr  attribute that holds the login name, default uid
                         (use `mail` when users log in with their address)

The plugin searches anonymously for (<attr>=<user>) below ldap_base (the user
name is escaped, RFC 4515), then binds with the DN it found and the password.
Exactly one entry must match. An unknown user is DECLINED, a failed bind DENY,
an unreachable server DENYSOFT (454). Empty passwords never get here (an LDAP
bind with an empty password would be an anonymous bind).

Hooks: auth-plain, auth-login.

Example config/plugins line:
  auth/auth_ldap_bind ldap_host ldap.example.com ldap_base dc=example,dc=com
"""

from ldap3 import NONE, SUBTREE, Connection, Server
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars

from qpsmtpd_py.constants import DECLINED, DENY, DENYSOFT, LOGERROR, LOGINFO, OK
from qpsmtpd_py.plugin import Plugin

DEFAULTS = {"ldap_host": "127.0.0.1", "ldap_port": "389", "ldap_timeout": "5",
            "ldap_auth_filter_attr": "uid", "ldap_base": None}


class AuthLdapBind(Plugin):
    def register(self, *args):
        super().register(*args)
        for key in self.args:
            if key not in DEFAULTS and key != "loglevel":
                raise ValueError(f"unknown argument '{key}' (known: {', '.join(DEFAULTS)})")

    def settings(self):
        """Defaults, then the `ldap` config file, then the plugin arguments."""
        conf = dict(DEFAULTS)
        for line in self.config_list("ldap"):
            key, _, value = line.partition(" ")
            if key in DEFAULTS and value.strip():
                conf[key] = value.strip()
        conf.update({k: v for k, v in self.args.items() if k in DEFAULTS})
        return conf

    def hook_auth_plain(self, transaction, method, user, clear, digest, ticket):
        conf = self.settings()
        if not conf["ldap_base"]:
            self.log(LOGERROR, "skip, no ldap_base configured")
            return DECLINED
        port, timeout = int(conf["ldap_port"]), max(1, int(float(conf["ldap_timeout"])))
        where = f"{conf['ldap_host']}:{port}"
        server = Server(conf["ldap_host"], port=port, use_ssl=(port == 636), get_info=NONE,
                        connect_timeout=timeout)
        search = f"({conf['ldap_auth_filter_attr']}={escape_filter_chars(user)})"
        try:
            dns = _search(server, timeout, conf["ldap_base"], search)
        except LDAPException as exc:
            self.log(LOGERROR, f"error, LDAP search at {where}: {exc.__class__.__name__}")
            return DENYSOFT, "auth_ldap_bind - directory unavailable"
        if len(dns) != 1:
            self.log(LOGINFO, f"fail, {len(dns)} entries match {search}")
            return DECLINED, "auth_ldap_bind - no such user"
        try:
            bound = _bind(server, timeout, dns[0], clear)
        except LDAPException as exc:
            self.log(LOGERROR, f"error, LDAP bind at {where}: {exc.__class__.__name__}")
            return DENYSOFT, "auth_ldap_bind - directory unavailable"
        if not bound:
            self.log(LOGINFO, f"fail, bind as {dns[0]}")
            return DENY, "auth_ldap_bind - wrong password"
        self.log(LOGINFO, f"pass, bound as {dns[0]}")
        return OK, "auth_ldap_bind"

    hook_auth_login = hook_auth_plain


def _search(server, timeout, base, search):
    """DNs of the entries matching `search` (anonymous bind)."""
    conn = Connection(server, receive_timeout=timeout)
    try:
        conn.bind()
        conn.search(base, search, search_scope=SUBTREE, attributes=[], size_limit=2,
                    time_limit=int(timeout))
        return [entry["dn"] for entry in conn.response if entry.get("type") == "searchResEntry"]
    finally:
        conn.unbind()


def _bind(server, timeout, dn, password):
    """True when the directory accepts `password` for `dn`."""
    conn = Connection(server, user=dn, password=password, receive_timeout=timeout)
    try:
        return conn.bind()
    finally:
        conn.unbind()
