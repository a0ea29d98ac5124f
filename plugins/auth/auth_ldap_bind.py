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

from qpsmtpd_py.api import AuthPlugin, AuthUnavailable, Int, Keyword, Number, Text, require_extra

require_extra("ldap3", "ldap3", "ldap", "python3-ldap3", "auth/auth_ldap_bind")
from ldap3 import NONE, SUBTREE, Connection, Server  # noqa: E402  (after the check above)
from ldap3.core.exceptions import LDAPException  # noqa: E402
from ldap3.utils.conv import escape_filter_chars  # noqa: E402

DEFAULTS = {"ldap_host": "127.0.0.1", "ldap_port": "389", "ldap_timeout": "5",
            "ldap_auth_filter_attr": "uid", "ldap_base": None}


class AuthLdapBind(AuthPlugin):
    arguments = (
        Keyword("ldap_host", Text(), None, "server (default 127.0.0.1)"),
        Keyword("ldap_port", Int(min=1, max=65535), None, "port (default 389; 636 means LDAPS)"),
        Keyword("ldap_base", Text(), None, "search base, e.g. dc=example,dc=com (required here "
                "or in the config file ldap)"),
        Keyword("ldap_timeout", Number(min=0.1, unit="seconds"), None, "default 5"),
        Keyword("ldap_auth_filter_attr", Text(), None, "attribute with the login name (default uid)"),
    )

    def settings(self):
        """Defaults, then the `ldap` config file, then the plugin arguments."""
        conf = dict(DEFAULTS)
        for line in self.config_list("ldap"):
            key, _, value = line.partition(" ")
            if key in DEFAULTS and value.strip():
                conf[key] = value.strip()
        conf.update({k: str(self.args[k]) for k in DEFAULTS if k in self.args.given})
        return conf

    def skip_reason(self):
        return None if self.settings()["ldap_base"] else "no ldap_base configured"

    def check(self, user, password):
        conf = self.settings()
        port, timeout = int(conf["ldap_port"]), max(1, int(float(conf["ldap_timeout"])))
        where = f"{conf['ldap_host']}:{port}"
        server = Server(conf["ldap_host"], port=port, use_ssl=(port == 636), get_info=NONE,
                        connect_timeout=timeout)
        search = f"({conf['ldap_auth_filter_attr']}={escape_filter_chars(user)})"
        try:
            dns = _search(server, timeout, conf["ldap_base"], search)
        except LDAPException as exc:
            raise AuthUnavailable(f"LDAP search at {where}: {exc.__class__.__name__}")
        if len(dns) != 1:
            return None                      # no such user (or several: ambiguous)
        try:
            return _bind(server, timeout, dns[0], password)
        except LDAPException as exc:
            raise AuthUnavailable(f"LDAP bind at {where}: {exc.__class__.__name__}")


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
