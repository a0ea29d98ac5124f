"""auth/auth_vpopmail_sql - SMTP AUTH against vpopmail's MySQL/MariaDB table.

Config files (qpsmtpd's names and defaults):
  vpopmail_mysql_dsn   DBI-style DSN, default `dbi:mysql:dbname=vpopmail;host=127.0.0.1`;
                       understood keys: dbname/database, host, port, mysql_socket
  vpopmail_mysql_user  default vpopmailuser
  vpopmail_mysql_pass  default vpoppasswd

The query is `SELECT pw_passwd, pw_clear_passwd FROM vpopmail WHERE pw_name=? AND
pw_domain=?` (the single-table vpopmail layout). PLAIN and LOGIN match the clear
password or the crypt() hash ($1$, $5$, $6$ ...); CRAM-MD5 needs pw_clear_passwd.
A user name without a domain or an unknown user is DECLINED, a wrong password
DENY, a database that cannot be reached DENYSOFT (454).

Hooks: auth-plain, auth-login, auth-cram-md5.

Example config/plugins line:  auth/auth_vpopmail_sql
"""

from qpsmtpd_py.api import AuthPlugin, AuthUnavailable, require_extra

pymysql = require_extra("pymysql", "PyMySQL", "sql", "python3-pymysql", "auth/auth_vpopmail_sql")

DEFAULT_DSN = "dbi:mysql:dbname=vpopmail;host=127.0.0.1"
QUERY = "SELECT pw_passwd, pw_clear_passwd FROM vpopmail WHERE pw_name=%s AND pw_domain=%s"


def parse_dsn(dsn):
    """'dbi:mysql:dbname=vpopmail;host=h;port=3306' -> pymysql.connect keywords."""
    parts = dsn.split(":", 2)
    if len(parts) != 3 or parts[0].lower() != "dbi" or parts[1].lower() not in ("mysql", "mariadb"):
        raise ValueError(f"vpopmail_mysql_dsn: '{dsn}' is not a dbi:mysql: DSN")
    options = {}
    for item in parts[2].split(";"):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep:                              # dbi:mysql:vpopmail (database only)
            key, value = "database", key
        key = key.strip().lower()
        if key in ("dbname", "database", "db"):
            options["database"] = value
        elif key in ("host", "hostname"):
            options["host"] = value
        elif key == "port":
            options["port"] = int(value)
        elif key == "mysql_socket":
            options["unix_socket"] = value
    return options


class AuthVpopmailSQL(AuthPlugin):
    arguments = ()

    def connect(self):
        options = parse_dsn(self.config("vpopmail_mysql_dsn") or DEFAULT_DSN)
        return pymysql.connect(user=self.config("vpopmail_mysql_user") or "vpopmailuser",
                               password=self.config("vpopmail_mysql_pass") or "vpoppasswd",
                               connect_timeout=5, read_timeout=10, write_timeout=10,
                               charset="utf8mb4", **options)

    def stored_password(self, user):
        """(pw_clear_passwd, pw_passwd) of user@domain, or None."""
        name, _, domain = user.lower().partition("@")
        if not name or not domain:
            return None
        try:
            db = self.connect()
            try:
                with db.cursor() as cursor:
                    cursor.execute(QUERY, (name, domain))
                    row = cursor.fetchone()
            finally:
                db.close()
        except (pymysql.Error, ValueError, OSError) as exc:
            raise AuthUnavailable(f"database: {exc.__class__.__name__}: {exc}")
        if not row:
            return None
        crypted, clear = row
        return clear, crypted
