"""virus/clamdscan against the real clamd (t/services, local EICAR signatures): EICAR
plain and as a base64 attachment over TCP and the unix socket, clean mail marked,
deny_viruses no, scan_all, max_size; clamd killed mid-scan, silent, absent; a 20 MB
message scanned with bounded memory in the worker process."""

import pytest

from harness import service_env
from scanhelp import (EICAR, KillableProxy, attachment_message, data_reply, free_port,
                      header_of, message, plugin_server, talk_to_silent_server, transaction)
from qpsmtpd_py.config import ConfigError

VIRUS = "Virus found: Local.Test.EICAR"


@pytest.fixture(scope="module")
def clamd():
    return {"unix": f"clamd_socket {service_env('QPT_CLAMD_SOCKET')}",
            "tcp": f"clamd_host {service_env('QPT_CLAMD_HOST')} "
                   f"clamd_port {service_env('QPT_CLAMD_PORT')}",
            "address": f"{service_env('QPT_CLAMD_HOST')}:{service_env('QPT_CLAMD_PORT')}"}


@pytest.fixture
def clam_server(session_server):
    return plugin_server(session_server, "virus/clamdscan")


@pytest.mark.parametrize("kind", ["tcp", "unix"])
@pytest.mark.parametrize("text", [message(EICAR + "\n"), attachment_message(EICAR)],
                         ids=["plain", "base64-attachment"])
def test_eicar_is_refused(clam_server, clamd, kind, text):
    d = clam_server(clamd[kind]).talk(*transaction(text))
    code, reply = data_reply(d)
    assert (code, reply[:len(VIRUS)]) == (552, VIRUS), reply
    assert d.messages == [] and d.connection.notes["naughty"].startswith(VIRUS)


def test_clean_mail_passes_with_headers(clam_server, clamd):
    d = clam_server(clamd["unix"]).talk(*transaction(attachment_message("just a text file\n")))
    assert data_reply(d)[0] == 250
    fields = header_of(d.messages[0])
    assert fields["x-virus-found"] == ["No"]
    [checked] = fields["x-virus-checked"]
    assert checked.startswith("by ClamAV ") and checked.endswith(" on mx.example.test")
    assert d.messages[0]["header"].startswith("X-Virus-Checked: by ClamAV")
    assert "pass, clean" in d.log


def test_deny_viruses_no_delivers_marked(clam_server, clamd):
    d = clam_server(f"{clamd['tcp']} deny_viruses no").talk(*transaction(attachment_message(EICAR)))
    assert data_reply(d)[0] == 250
    fields = header_of(d.messages[0])
    assert fields["x-virus-found"] == ["Yes"]
    assert fields["x-virus-details"][0].startswith("Local.Test.EICAR")
    assert d.connection.notes["karma"] == -1


def test_scan_all_0_scans_multipart_only_and_max_size(clam_server, clamd):
    srv = clam_server(f"{clamd['unix']} scan_all 0")
    d = srv.talk(*transaction(message(EICAR + "\n")))
    assert data_reply(d)[0] == 250 and "skip, not multipart" in d.log
    assert data_reply(srv.talk(*transaction(attachment_message(EICAR))))[0] == 552
    d = clam_server(f"{clamd['unix']} max_size 1").talk(*transaction(message("x" * 2000 + EICAR)))
    assert data_reply(d)[0] == 250 and "skip, too big" in d.log


def test_naughty_connection_is_not_scanned(session_server, clamd):
    srv = session_server("t_note naughty earlier", f"virus/clamdscan {clamd['unix']}",
                         files={"loglevel": "6"})
    d = srv.talk(*transaction(message(EICAR + "\n")))
    assert data_reply(d)[0] == 250 and "skip, naughty" in d.log


# -- failures ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, expect", [("", 452), ("defer_on_error 1", 452),
                                          ("defer_on_error 0", 250), ("failure accept", 250)])
def test_clamd_killed_mid_scan(clam_server, clamd, args, expect):
    text = message("x" * 50_000 + "\n" + EICAR + "\n")
    proxy = KillableProxy(clamd["address"], die_at=40_000)     # clamd has most of the stream
    try:
        host, port = proxy.address.split(":")
        d = clam_server(f"clamd_host {host} clamd_port {port} {args}").talk(*transaction(text))
    finally:
        proxy.close()
    assert proxy.died()
    code, reply = data_reply(d)
    assert code == expect, reply
    if expect == 452:
        assert reply == "Unable to scan for viruses" and d.messages == []
    else:
        assert header_of(d.messages[0])["x-scan-failed"][0].startswith("virus/clamdscan: clamd at ")


def test_slow_clamd_answer_within_the_timeout(clam_server):
    d, elapsed, _ = talk_to_silent_server(
        clam_server, "clamd_host 127.0.0.1 clamd_port {port} timeout 1", "hello\n")
    assert data_reply(d) == (452, "Unable to scan for viruses")
    assert 0.9 <= elapsed < 2.5, elapsed
    assert "no answer within 1s" in d.log


def test_clamd_absent(clam_server, tmp_path):
    d = clam_server(f"clamd_socket {tmp_path}/none.sock").talk(*transaction(message("hello\n")))
    assert data_reply(d)[0] == 452 and "No such file" in d.log
    d = clam_server(f"clamd_port {free_port()} clamd_host 127.0.0.1 failure accept").talk(
        *transaction(message("hello\n")))
    assert data_reply(d)[0] == 250


@pytest.mark.no_services
def test_conflicting_policy_arguments(clam_server):
    with pytest.raises(ConfigError, match="defer_on_error and failure disagree"):
        clam_server("defer_on_error 1 failure accept")
    with pytest.raises(ConfigError, match="deny_viruses 'maybe'"):
        clam_server("deny_viruses maybe")


# -- a 20 MB message in a real server process -----------------------------------------------------------
def vm_kb(pid, field):
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(field)


def test_20mb_message_scanned_with_bounded_memory(mail_config, clamd):
    cfg = mail_config(f"virus/clamdscan {clamd['unix']} max_size 25600 timeout 60",
                      files={"loglevel": "6", "databytes": str(30 << 20)})
    line = b"abcdefghij" * 7 + b"\r\n"                      # 72 bytes a line
    body = line * ((20 << 20) // len(line)) + EICAR.encode() + b"\r\n"
    with cfg.session() as c:
        c.cmd("HELO client.test")
        c.cmd("MAIL FROM:<a@b.test>")
        c.cmd("RCPT TO:<u@example.test>")
        assert c.cmd("DATA")[0] == 354
        base = vm_kb(c.proc.pid, "VmRSS")
        c.send(b"Subject: big\r\n\r\n")
        for start in range(0, len(body), 1 << 20):
            c.send(body[start:start + (1 << 20)])
        c.send(b".\r\n")
        code, text = c.read_reply()
        peak = vm_kb(c.proc.pid, "VmHWM")
        c.cmd("QUIT")
    assert code == 552 and "\n".join(text).startswith(VIRUS), text
    assert len(body) > 20 << 20
    # the worker's peak memory grew by a fraction of the message: it was spooled to disk
    # and streamed to clamd in 64 KB chunks, never held whole
    assert peak - base < 8 * 1024, (base, peak)
