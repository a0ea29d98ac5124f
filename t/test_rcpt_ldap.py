"""rcpt_ldap against the real slapd of t/services (entries added per test run)."""

import uuid

import ldap3
import pytest

from harness import free_port, mail_server_config, service_env

NOT_FOUND = "5.1.1 Sorry, no mailbox here by that name. (#5.1.1)"


@pytest.fixture(scope="module")
def directory():
    """(uri, base, admin dn, admin pw, carol's address): carol is added for this run."""
    uri, base = service_env("QPT_LDAP_URI"), service_env("QPT_LDAP_BASE")
    admin, password = service_env("QPT_LDAP_ADMIN_DN"), service_env("QPT_LDAP_ADMIN_PW")
    tag = uuid.uuid4().hex[:8]
    ou = f"ou=rcpt-{tag},{base}"
    carol = f"carol.{tag}@example.test"
    conn = ldap3.Connection(ldap3.Server(uri), admin, password, auto_bind=True)
    assert conn.add(ou, "organizationalUnit", {"ou": f"rcpt-{tag}"}), conn.result
    assert conn.add(f"uid=carol-{tag},{ou}", "inetOrgPerson",
                    {"uid": f"carol-{tag}", "cn": "Carol", "sn": "Test", "mail": carol}), conn.result
    yield uri, ou, admin, password, carol
    conn.delete(f"uid=carol-{tag},{ou}")
    conn.delete(ou)
    conn.unbind()


def server(make_config, directory, args="", ldap_file=None, final="rcpt_ok", extra=()):
    uri, ou, *_ = directory
    files = {"rcpthosts": "example.test\nother.test", "loglevel": "6",
             "ldap": ldap_file if ldap_file is not None else f"ldap_uri {uri}\nldap_base {ou}\nldap_timeout 2"}
    return mail_server_config(make_config, *extra, f"rcpt_ldap {args}".strip(), files=files,
                              final=[*([final] if final else []), "queue/maildir {maildir}"])


def rcpts(srv, *addresses, env=None):
    """[(code, text)] for each RCPT of one transaction, and the log."""
    with srv.session(env=env) as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@sender.test>")[0] == 250
        out = [c.cmd(f"RCPT TO:<{a}>") for a in addresses]
    return out, c.stderr


def test_known_recipients_pass_unknown_are_refused(make_config, directory):
    carol = directory[4]
    srv = server(make_config, directory)
    (found, upper, unknown), log = rcpts(srv, carol, carol.upper(), "nobody@example.test")
    assert found[0] == 250 and upper[0] == 250
    assert unknown == (550, NOT_FOUND)
    assert f"pass, {carol} found" in log and "fail (nobody@example.test not in the directory)" in log


def test_a_filter_metacharacter_in_the_address_matches_nothing(make_config, directory):
    srv = server(make_config, directory)
    (star,), _ = rcpts(srv, "*@example.test")
    assert star == (550, NOT_FOUND)


def test_filter_placeholders_and_arguments_override_the_file(make_config, directory):
    uri, ou, _, _, carol = directory
    user = carol.split("@")[0]
    srv = server(make_config, directory, args="ldap_rcpt_filter (&(mail=%u@*)(mail=*@%d))")
    (found, other_domain), _ = rcpts(srv, carol, f"{user}@other.test")
    assert found[0] == 250 and other_domain == (550, NOT_FOUND)
    # settings only as arguments, with ldap_host/ldap_port instead of a URI
    host, port = uri[len("ldap://"):].rsplit(":", 1)
    srv = server(make_config, directory, ldap_file="",
                 args=f"ldap_host {host} ldap_port {port} ldap_base {ou}")
    assert rcpts(srv, carol)[0][0][0] == 250


def test_accept_1_accepts_without_rcpt_ok(make_config, directory):
    carol = directory[4]
    srv = server(make_config, directory, args="accept 1", final=None)
    (found, unknown), _ = rcpts(srv, carol, "nobody@example.test")
    assert found[0] == 250 and unknown == (550, NOT_FOUND)
    srv = server(make_config, directory, final=None)           # without accept: nobody decides
    assert rcpts(srv, carol)[0][0][0] == 450


def test_authenticated_bind_and_a_wrong_password(make_config, directory):
    uri, ou, admin, password, carol = directory
    srv = server(make_config, directory, ldap_file=f"ldap_uri {uri}\nldap_base {ou}\n"
                 f"ldap_bind_dn {admin}\nldap_bind_pw {password}")
    assert rcpts(srv, carol)[0][0][0] == 250
    srv = server(make_config, directory, ldap_file=f"ldap_uri {uri}\nldap_base {ou}\n"
                 f"ldap_bind_dn {admin}\nldap_bind_pw wrong")
    (reply,), log = rcpts(srv, carol)
    assert reply[0] == 450 and "#4.4.3" in reply[1]
    assert "bind as cn=admin" in log and "invalidCredentials" in log


def test_directory_down_is_a_temporary_failure(make_config, directory):
    srv = server(make_config, directory,
                 ldap_file=f"ldap_uri ldap://127.0.0.1:{free_port()}\nldap_base {directory[1]}\nldap_timeout 1")
    (reply,), log = rcpts(srv, directory[4])
    assert reply == (450, "4.4.3 Temporary failure looking up the recipient, please try again "
                          "later (#4.4.3)")
    assert "error, cannot look up" in log and "cannot connect" in log


def test_a_missing_base_is_a_logged_temporary_failure(make_config, directory):
    srv = server(make_config, directory, args=f"ldap_base ou=missing,{directory[1]}")
    (reply,), log = rcpts(srv, "x@example.test")
    assert reply[0] == 450 and "noSuchObject" in log


def test_foreign_domains_are_not_looked_up(make_config, directory):
    srv = server(make_config, directory, args="accept 1", final="rcpt_ok")
    (reply,), log = rcpts(srv, "someone@elsewhere.test")
    assert reply == (550, "5.7.1 Relaying denied (#5.7.1)")
    assert "skip, elsewhere.test is not one of our domains" in log


def test_relay_clients_and_reject_0(make_config, directory):
    srv = server(make_config, directory, extra=["relay"])
    assert rcpts(srv, "nobody@elsewhere.test", env={"RELAYCLIENT": ""})[0][0][0] == 250
    srv = server(make_config, directory, args="reject 0")
    (reply,), log = rcpts(srv, "nobody@example.test")
    assert reply[0] == 250 and "fail, tolerated" in log


@pytest.mark.parametrize("args, reason", [("", "ldap_base is required"),
                                          ("ldap_uri http://x ldap_base dc=x",
                                           "ldap_uri 'http://x': expected ldap://host:port"),
                                          ("ldap_base dc=x ldap_filter x", "unknown argument")])
def test_bad_settings_stop_start_up(make_config, directory, args, reason):
    c = server(make_config, directory, args=args, ldap_file="").session(read_greeting=False)
    assert c.closed()
    assert reason in c.stderr and c.proc.returncode == 78
