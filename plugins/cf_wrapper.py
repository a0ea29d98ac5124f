"""cf_wrapper - per-recipient decisions for content filters (Peter J. Holzer's
plugin), although SMTP has only one answer to DATA.

Sender/recipient pairs are kept in sets in an SQL table. At RCPT only recipients in
the same set as the transaction's first recipient are accepted here; the others get
`450 Please send this recipient in a separate transaction`, and the client sends
them again in a later transaction. So after DATA every recipient is from one set,
and the content filters will very likely agree for all of them. They report per
recipient: a filter that wants to work with cf_wrapper returns DECLINED and puts a
return code (a number: DENY, DENYSOFT, OK, DECLINED from qpsmtpd_py.api) per
recipient address into the transaction note `cf_wrapper_results`
({'u@example.test': DENY}; a list of codes from several filters also works). At
data_post:
  * all recipients accepted (OK, DECLINED or no result): the message passes;
  * all refused (DENY): `552 Message denied`;
  * some temporarily refused (DENYSOFT): `452 Message denied temporarily`;
  * mixed: the refusing recipients (or the accepting ones, whichever are fewer) move
    to a new set and the message gets `452 Message denied temporarily`; the client's
    retry then brings sets that agree.
In the worst case a set splits down to one recipient per transaction.

Config: the file named by dbi_credentials holds three lines: a DBI data source
(`dbi:mysql:database=qpsmtpd;host=127.0.0.1;port=3306`, or `dbi:SQLite:dbname=/var/
lib/qpsmtpd/cf_wrapper.db`), the user and the password (keep it readable by the
server's user only). The table is created when missing:
  CREATE TABLE cf_wrapper (sender VARCHAR(255), recipient VARCHAR(255), set_id INT,
                           PRIMARY KEY (sender, recipient))
Notes: `cf_wrapper_accept_set` (the set accepted in this transaction),
`cf_wrapper_results` (the filters' results), `cf_wrapper_sets` (recipient -> set).

Arguments:
  dbi_credentials FILE   the credentials file (required)
  table NAME             the table; default cf_wrapper
  timeout SECONDS        database connect/read time-out; default 10
  failure tempfail|accept  when the database fails: temp-fail the recipient
                         (default) or accept it without sets
Hooks: rcpt, data_post (load it after the recipient checks and after the content
filters that report to it).
Example:
  cf_wrapper dbi_credentials /etc/qpsmtpd/cf_wrapper.credentials
"""

import sqlite3

from qpsmtpd_py.api import (
    DECLINED, DENY, DENY_CODES, DENYSOFT, LOGERROR, LOGINFO, LOGWARN, Keyword, Path, Plugin, Text,
    is_soft, require_extra, scan_arguments,
)

pymysql = None          # dbi:mysql only: the sql extra, imported in register()

BUSY = "Please send this recipient in a separate transaction"


class DatabaseError(Exception):
    pass


def read_credentials(path):
    try:
        with open(path, encoding="utf-8") as fh:
            lines = [l.strip() for l in fh if l.strip() and not l.startswith("#")]
    except OSError as exc:
        raise ValueError(f"dbi_credentials {path}: {exc.strerror}") from None
    if not lines or not lines[0].lower().startswith("dbi:"):
        raise ValueError(f"dbi_credentials {path}: the first line must be a dbi: data source")
    return lines[0], (lines[1] if len(lines) > 1 else ""), (lines[2] if len(lines) > 2 else "")


def parse_dsn(dsn):
    """'dbi:mysql:database=x;host=h;port=1' -> ('mysql', {...}); dbi:SQLite:dbname=f -> ('sqlite', {...})."""
    _, driver, rest = (dsn.split(":", 2) + ["", ""])[:3]
    options = {}
    for item in rest.split(";"):
        key, sep, value = item.partition("=")
        if not item.strip():
            continue
        if not sep:
            key, value = "database", key
        options[key.strip().lower()] = value.strip()
    driver = driver.lower()
    if driver in ("mysql", "mariadb"):
        out = {"database": options.get("database") or options.get("dbname") or options.get("db")}
        if "host" in options:
            out["host"] = options["host"]
        if "port" in options:
            out["port"] = int(options["port"])
        if "mysql_socket" in options:
            out["unix_socket"] = options["mysql_socket"]
        return "mysql", out
    if driver == "sqlite":
        return "sqlite", {"database": options.get("dbname") or options.get("database")}
    raise ValueError(f"unsupported DBI driver '{driver}' (mysql, mariadb or SQLite)")


class CfWrapper(Plugin):
    arguments = (
        Keyword("dbi_credentials", Path(), None, "file with data source, user and password",
                required=True),
        Keyword("table", Text(r"\w+", "a table name"), "cf_wrapper", "the table of sets"),
        *scan_arguments(10.0, what="the database"),
    )

    def register(self, *args):
        dsn, self.user, self.password = read_credentials(self.args["dbi_credentials"])
        self.driver, self.options = parse_dsn(dsn)
        if self.driver == "mysql":
            global pymysql
            pymysql = require_extra("pymysql", "PyMySQL", "sql", "python3-pymysql", "cf_wrapper")
        self.table = self.args["table"]
        self.ready = False

    # -- database --------------------------------------------------------------------------
    def query(self, sql, params=(), write=False):
        """Run one statement; rows for a SELECT. DatabaseError on any failure."""
        try:
            if self.driver == "mysql":
                conn = pymysql.connect(user=self.user, password=self.password, charset="utf8mb4",
                                       connect_timeout=self.args["timeout"],
                                       read_timeout=self.args["timeout"],
                                       write_timeout=self.args["timeout"], **self.options)
            else:
                conn = sqlite3.connect(self.options["database"], timeout=self.args["timeout"])
                sql = sql.replace("%s", "?")
            try:
                if not self.ready:
                    conn.cursor().execute(
                        f"CREATE TABLE IF NOT EXISTS {self.table} (sender VARCHAR(255) NOT NULL, "
                        "recipient VARCHAR(255) NOT NULL, set_id INT NOT NULL, "
                        "PRIMARY KEY (sender, recipient))")
                    self.ready = True
                cur = conn.cursor()
                cur.execute(sql, params)
                rows = cur.fetchall()
                if write:
                    conn.commit()
                return rows
            finally:
                conn.close()
        except (*((pymysql.Error,) if pymysql else ()), sqlite3.Error, OSError) as exc:
            raise DatabaseError(f"{self.driver} database: {exc}") from exc

    def set_of(self, sender, rcpt):
        rows = self.query(f"SELECT set_id FROM {self.table} WHERE sender=%s AND recipient=%s",
                          (sender, rcpt))
        return int(rows[0][0]) if rows else 0

    def move(self, sender, recipients):
        rows = self.query(f"SELECT MAX(set_id) FROM {self.table} WHERE sender=%s", (sender,))
        new = int(rows[0][0] or 0) + 1 if rows else 1
        for rcpt in recipients:
            self.query(f"DELETE FROM {self.table} WHERE sender=%s AND recipient=%s", (sender, rcpt),
                       write=True)
            self.query(f"INSERT INTO {self.table} (sender, recipient, set_id) VALUES (%s, %s, %s)",
                       (sender, rcpt, new), write=True)
        return new

    # -- hooks ---------------------------------------------------------------------------------
    def hook_rcpt(self, transaction, rcpt, params):
        sender = _address(transaction.sender)
        try:
            set_id = self.set_of(sender, _address(rcpt))
        except DatabaseError as exc:
            if self.args["failure"] == "accept":
                self.log(LOGWARN, f"error, {exc}; going on without sets (failure accept)")
                return DECLINED
            self.log(LOGERROR, f"error, {exc}")
            return DENYSOFT, "Temporary failure, try again later"
        accepted = transaction.notes.setdefault("cf_wrapper_accept_set", set_id)
        if set_id != accepted:
            self.log(LOGINFO, f"defer, {rcpt.address} is in set {set_id}, not {accepted}")
            return DENYSOFT, BUSY
        transaction.notes.setdefault("cf_wrapper_sets", {})[_address(rcpt)] = set_id
        return DECLINED

    def hook_data_post(self, transaction):
        results = transaction.notes.get("cf_wrapper_results") or {}
        verdicts = {}
        for rcpt in transaction.recipients:
            codes = results.get(rcpt.address) or results.get(_address(rcpt))
            codes = codes if isinstance(codes, (list, tuple)) else [codes]
            codes = [c for c in codes if isinstance(c, int)]
            if any(c in DENY_CODES and not is_soft(c) for c in codes):
                verdicts[_address(rcpt)] = "reject"
            elif any(c in DENY_CODES for c in codes):
                verdicts[_address(rcpt)] = "defer"
            else:
                verdicts[_address(rcpt)] = "accept"
        kinds = set(verdicts.values())
        if kinds <= {"accept"}:
            self.log(LOGINFO, "pass, every recipient accepts")
            return DECLINED
        if kinds == {"reject"}:
            self.log(LOGINFO, "fail, every recipient refuses")
            return DENY, "Message denied"
        if "defer" in kinds:
            self.log(LOGINFO, "fail, a filter deferred the message")
            return DENYSOFT, "Message denied temporarily"
        refusing = [r for r, v in verdicts.items() if v == "reject"]
        accepting = [r for r, v in verdicts.items() if v == "accept"]
        moving = refusing if len(refusing) <= len(accepting) else accepting
        try:
            new = self.move(_address(transaction.sender), moving)
        except DatabaseError as exc:
            self.log(LOGERROR, f"error, {exc}")
            return DENYSOFT, "Message denied temporarily"
        self.log(LOGINFO, f"split, {', '.join(moving)} moved to set {new}")
        return DENYSOFT, "Message denied temporarily"


def _address(address):
    return address.address.lower() if address is not None else ""
