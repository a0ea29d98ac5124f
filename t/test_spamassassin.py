"""spamassassin against the real spamd (t/services): GTUBE refused over TCP and the
unix socket, clean mail marked, the transaction note, subject munging, old header
handling, per-user names; spamd killed mid-scan, silent, or absent (failure policy
and the time-out)."""

import time

import pytest

from harness import service_env
from scanhelp import (GTUBE, HEADER, KillableProxy, data_reply, free_port, header_of, message,
                      plugin_server, talk_to_silent_server, transaction)
from qpsmtpd_py.config import ConfigError


@pytest.fixture(scope="module")
def spamd():
    return {"unix": service_env("QPT_SPAMD_SOCKET"),
            "tcp": f"{service_env('QPT_SPAMD_HOST')}:{service_env('QPT_SPAMD_PORT')}"}


@pytest.fixture
def spam_server(session_server):
    return plugin_server(session_server, "spamassassin")


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_gtube_is_refused(spam_server, spamd, kind):
    d = spam_server(f"spamd_socket {spamd[kind]} reject 10").talk(*transaction(message(GTUBE)))
    assert data_reply(d) == (552, "spam score exceeded threshold")
    assert d.messages == []
    assert "fail, Spam, " in d.log and d.connection.notes["karma"] == -1


def test_clean_mail_passes_with_headers_and_note(spam_server, spamd):
    d = spam_server(f"spamd_socket {spamd['tcp']} reject 10").talk(
        *transaction(message("Hello Bob,\n\nlunch at noon?\n\nAlice\n")))
    assert data_reply(d)[0] == 250
    [msg] = d.messages
    fields = header_of(msg)
    assert fields["x-spam-status"][0].startswith("No, score=")
    assert fields["x-spam-checker-version"][0].startswith("SpamAssassin ")
    assert "x-spam-report" not in fields
    # the X-Spam-* block is on top, in spamd's order, before our Received line
    assert msg["header"].startswith("X-Spam-")
    assert msg["header"].index("X-Spam-Status") < msg["header"].index("Received:")
    assert "pass, Ham, " in d.log


def test_note_for_later_plugins_and_headers_none(spam_server, spamd, mail_config, clock):
    from inproc import InProcessServer
    cfg = mail_config(f"spamassassin spamd_socket {spamd['unix']} headers none", "t_keepnote spamassassin",
                      final=("rcpt_ok", "t_capture"), files={"loglevel": "6"})
    d = InProcessServer(cfg, clock=clock).talk(*transaction(message(GTUBE)))
    assert data_reply(d)[0] == 250               # no reject threshold: never refused
    note = d.connection.notes["t_keepnote"]["spamassassin"]
    assert note["is_spam"] == "Yes" and float(note["score"]) >= 1000
    assert note["required"] == "5.0" and "GTUBE" in note["tests"]
    assert not any(k.startswith("x-spam") for k in header_of(d.messages[0]))


def test_munge_subject_and_old_headers(spam_server, spamd):
    header = HEADER.replace("Subject: test", "Subject: buy now") + \
        "X-Spam-Flag: YES\nX-Spam-Status: No, score=-100 (forged)\n"
    srv = spam_server(f"spamd_socket {spamd['tcp']} munge_subject_threshold 5 subject_prefix [SPAM]")
    d = srv.talk(*transaction(message(GTUBE, header)))
    fields = header_of(d.messages[0])
    assert fields["subject"] == ["[SPAM] buy now"]
    assert fields["x-old-spam-flag"] == ["YES"]
    assert fields["x-old-spam-status"] == ["No, score=-100 (forged)"]
    assert fields["x-spam-flag"] == ["YES"] and fields["x-spam-status"][0].startswith("Yes,")

    srv = spam_server(f"spamd_socket {spamd['tcp']} leave_old_headers drop munge_subject_threshold 5",
                      files={"subject_prefix": "*** JUNK ***"})
    fields = header_of(srv.talk(*transaction(message(GTUBE, header))).messages[0])
    assert "x-old-spam-flag" not in fields and fields["x-spam-status"][0].startswith("Yes,")
    assert fields["subject"] == ["*** JUNK *** buy now"]

    srv = spam_server(f"spamd_socket {spamd['tcp']} leave_old_headers keep")
    fields = header_of(srv.talk(*transaction(message("hi\n", header))).messages[0])
    assert "No, score=-100 (forged)" in fields["x-spam-status"]


def test_userprefs_threshold_and_legacy_spelling(spam_server, spamd):
    d = spam_server(f"spamd_socket {spamd['tcp']} reject userprefs").talk(*transaction(message(GTUBE)))
    assert data_reply(d) == (552, "spam score exceeded threshold")
    d = spam_server(f"spamd_socket {spamd['tcp']} reject_threshold 5000 reject_type temp").talk(
        *transaction(message(GTUBE)))
    assert data_reply(d)[0] == 250 and "fail, tolerated, Spam" in d.log
    d = spam_server(f"spamd_socket {spamd['tcp']} reject 10 reject_type temp").talk(
        *transaction(message(GTUBE)))
    assert data_reply(d) == (452, "spam score exceeded threshold")


def test_spamd_user_vpopmail_and_several_recipients(spam_server, spamd):
    srv = spam_server(f"spamd_socket {spamd['tcp']} spamd_user vpopmail loglevel 7")
    d = srv.talk(*transaction(message("hi\n"), recipients=("u@example.test", "v@example.test")))
    assert header_of(d.messages[0])["x-spam-user"] == ["vpopmail, 2 recipients"]
    d = srv.talk(*transaction(message("hi\n")))
    assert "x-spam-user" not in header_of(d.messages[0])


def test_size_limit_and_relay_clients_skip(spam_server, spamd):
    srv = spam_server(f"spamd_socket {spamd['tcp']} reject 5 size_limit 1000")
    d = srv.talk(*transaction(message(GTUBE + "\n" + "x" * 2000 + "\n")))
    assert data_reply(d)[0] == 250 and "skip, too large" in d.log
    d = spam_server(f"spamd_socket {spamd['tcp']} reject 5").talk(*transaction(message(GTUBE)),
                                                                   relay_client=True)
    assert data_reply(d)[0] == 250


# -- failures ------------------------------------------------------------------------------------
def test_spamd_killed_mid_scan_tempfails(spam_server, spamd):
    proxy = KillableProxy(spamd["tcp"], die_at="eof")       # spamd has the whole message
    try:      # spamd has the whole message
        d = spam_server(f"spamd_socket {proxy.address} reject 10").talk(*transaction(message(GTUBE)))
    finally:
        proxy.close()
    assert proxy.died()
    assert data_reply(d) == (452, "Unable to scan the message, try again later")
    assert d.messages == [] and "error, spamd at" in d.log


def test_spamd_killed_mid_scan_accept_policy_tags(spam_server, spamd):
    proxy = KillableProxy(spamd["unix"], die_at="eof")       # spamd has the whole message
    try:
        d = spam_server(f"spamd_socket {proxy.address} reject 10 failure accept").talk(
            *transaction(message(GTUBE)))
    finally:
        proxy.close()
    assert data_reply(d)[0] == 250
    [tag] = header_of(d.messages[0])["x-scan-failed"]
    assert tag.startswith("spamassassin: spamd at 127.0.0.1:")


def test_spamd_absent_tempfails_at_once(spam_server):
    start = time.monotonic()
    d = spam_server(f"spamd_socket 127.0.0.1:{free_port()}").talk(*transaction(message("hi\n")))
    assert data_reply(d)[0] == 452 and time.monotonic() - start < 2
    assert "refused" in d.log


def test_slow_spamd_answer_within_the_timeout(spam_server):
    d, elapsed, server = talk_to_silent_server(spam_server, "spamd_socket {address} timeout 1.5",
                                               "hi\n")
    assert data_reply(d) == (452, "Unable to scan the message, try again later")
    assert 1.4 <= elapsed < 2.5, elapsed
    assert bytes(server.received).startswith(b"HEADERS SPAMC/1.4\r\nContent-length: ")
    assert b"\r\n\r\nX-Envelope-From: <a@b.test>\r\nReceived: from " in server.received


@pytest.mark.no_services
@pytest.mark.parametrize("args, error", [
    ("reject lots", "reject 'lots': expected a score"),
    ("spamd_socket nowhere", "spamd_socket 'nowhere'"),
    ("leave_old_headers burn", "leave_old_headers 'burn'"),
    ("failure ignore", "failure 'ignore'"),
    ("rejct 5", "did you mean 'reject'"),
])
def test_bad_arguments_stop_startup(spam_server, args, error):
    with pytest.raises(ConfigError, match=error):
        spam_server(args)


def test_answer_cut_short_is_a_failure(spam_server, spamd):
    """spamd dying while it answers: a shorter body than its Content-length is no result."""
    import socket
    import threading
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def serve():
        conn, _ = listener.accept()
        with conn:
            while conn.recv(65536):              # the whole request, to the half-close
                pass
            conn.sendall(b"SPAMD/1.1 0 EX_OK\r\nContent-length: 500\r\n\r\n"
                         b"X-Spam-Status: No, score=0.1 required=5.0\r\n")
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    d = spam_server(f"spamd_socket 127.0.0.1:{listener.getsockname()[1]} timeout 5").talk(
        *transaction(message("hi\n")))
    listener.close()
    assert data_reply(d)[0] == 452 and "answer cut short" in d.log
