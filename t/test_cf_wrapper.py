"""cf_wrapper against the MariaDB of t/services (and SQLite): a message whose
recipients disagree is deferred and the set split; the retry brings one set per
transaction; unanimous refusals and acceptances; an unreachable database."""

import os
import secrets

import pymysql
import pytest

from harness import service_env
from scanhelp import data_reply, message, transaction

U, V, W = "u@example.test", "v@example.test", "w@example.test"


@pytest.fixture
def mysql_creds(tmp_path):
    host, port = service_env("QPT_MYSQL_HOST"), service_env("QPT_MYSQL_PORT")
    db, user, pw = service_env("QPT_MYSQL_DB"), service_env("QPT_MYSQL_USER"), service_env("QPT_MYSQL_PW")
    path = tmp_path / "cf_wrapper.credentials"
    path.write_text(f"dbi:mysql:database={db};host={host};port={port}\n{user}\n{pw}\n")
    table = "cfw_" + secrets.token_hex(4)
    yield str(path), table
    conn = pymysql.connect(host=host, port=int(port), user=user, password=pw, database=db)
    with conn:
        conn.cursor().execute(f"DROP TABLE IF EXISTS {table}")


def server(session_server, creds, table, filter_args):
    return session_server(f"t_cfresult {filter_args}",            # the filters come first
                          f"cf_wrapper dbi_credentials {creds} table {table}", files={"loglevel": "6"})


def rcpt_codes(d):
    return [r.code for r in d.replies[3:d.codes.index(354)]] if 354 in d.codes else d.codes[3:]


def run_split(srv):
    # 1st try: u and v in set 0, the filter refuses v only -> deferred, v moved
    d = srv.talk(*transaction(message("hi\n"), recipients=(U, V, W)))
    assert rcpt_codes(d) == [250, 250, 250]
    assert data_reply(d) == (452, "Message denied temporarily")
    assert "split, v@example.test moved to set 1" in d.log
    # the retry: v is in another set now
    d = srv.talk("HELO c.test", "MAIL FROM:<a@b.test>", f"RCPT TO:<{U}>", f"RCPT TO:<{V}>",
                 f"RCPT TO:<{W}>", "QUIT")
    assert d.pairs[3:6] == [(250, d.replies[3].text),
                            (450, "Please send this recipient in a separate transaction"),
                            (250, d.replies[5].text)]
    d = srv.talk(*transaction(message("hi\n"), recipients=(U, W)))
    assert data_reply(d)[0] == 250 and len(d.messages) == 1
    d = srv.talk(*transaction(message("hi\n"), recipients=(V,)))
    assert data_reply(d) == (552, "Message denied")


def test_split_with_mariadb(session_server, mysql_creds):
    creds, table = mysql_creds
    run_split(server(session_server, creds, table, f"{V}=DENY"))


@pytest.mark.no_services
def test_split_with_sqlite(session_server, tmp_path):
    creds = tmp_path / "creds"
    creds.write_text(f"dbi:SQLite:dbname={tmp_path}/cf.db\n\n\n")
    run_split(server(session_server, str(creds), "cf_wrapper", f"{V}=DENY"))


@pytest.mark.no_services
def test_deferring_filter_and_unreachable_database(session_server, tmp_path):
    creds = tmp_path / "creds"
    creds.write_text(f"dbi:SQLite:dbname={tmp_path}/cf.db\n")
    d = server(session_server, str(creds), "t1", f"{U}=DENYSOFT").talk(
        *transaction(message("hi\n"), recipients=(U, V)))
    assert data_reply(d) == (452, "Message denied temporarily")
    creds.write_text(f"dbi:SQLite:dbname={tmp_path}/no/such/dir/cf.db\n")
    d = server(session_server, str(creds), "t1", "").talk(*transaction(message("hi\n")))
    assert d.pairs[3] == (450, "Temporary failure, try again later")
    d = session_server(f"cf_wrapper dbi_credentials {creds} failure accept").talk(
        *transaction(message("hi\n")))
    assert data_reply(d)[0] == 250


@pytest.mark.no_services
def test_credentials_are_checked_at_startup(session_server, tmp_path):
    from qpsmtpd_py.config import ConfigError
    with pytest.raises(ConfigError, match="missing argument dbi_credentials"):
        session_server("cf_wrapper")
    with pytest.raises(ConfigError, match="No such file"):
        session_server(f"cf_wrapper dbi_credentials {tmp_path}/none")
    (tmp_path / "bad").write_text("mysql://x\n")
    with pytest.raises(ConfigError, match="must be a dbi: data source"):
        session_server(f"cf_wrapper dbi_credentials {tmp_path}/bad")
