"""Real SMTP clients and MTAs deliver a long-line message intact (issue 8, point 1).

swaks, msmtp, smtplib, aiosmtplib, Postfix (relayhost = us) and Exim (smarthost =
us) each send one MIME message with 8-bit UTF-8 text, dot lines, 998-octet lines
(plain and starting with "."), folded headers and a 10 MB base64 attachment to a
real qpsmtpd-prefork, which delivers it into a Maildir.  The stored file, less the
trace fields the path prepended, must be the sent message byte for byte (LF line
ends: the Maildir stores LF).  RFC 5321 4.5.3.1.6: the transparency dot does not
count toward a line limit, so a 998-octet line starting with "." (999 + CRLF on the
wire) is legal; by default qpsmtpd_py accepts lines of any length, as Perl qpsmtpd
and Postfix do, and `data_line_limit N` is the admin's opt-in.
"""

import asyncio
import base64
import os
import random
import smtplib

import pytest

from harness import ConfigDir, service_env
from mta import SENDER, EximClient, PostfixRelay, run
from serverproc import Server, wait_until
from tools import require_tool

TRACE_FIELDS = (b"return-path", b"delivered-to", b"received", b"authentication-results")
BOUNDARY = "=_qpsmtpd_py_long_lines_0001"


# ---------------------------------------------------------------------------- the message
@pytest.fixture(scope="module")
def attachment():
    """10 MB of (seeded) random data, base64 in 76-character lines."""
    data = random.Random(8).randbytes(10_000_000)
    return base64.encodebytes(data)


def long_line_message(tag, attachment):
    """The test message for client `tag` (recipient <tag@example.test>), LF line ends."""
    head = (
        "Date: Thu, 03 Dec 2026 12:00:00 +0000\n"
        "From: =?utf-8?q?Gr=C3=BC=C3=9Fe?= <sender@example.test>\n"
        f"To: {tag} <{tag}@example.test>,\n"
        "\tOther Person <other@example.test>\n"
        f"Subject: long lines, dots and 8-bit text through {tag},\n"
        " folded over\n"
        "\tthree lines\n"
        f"Message-ID: <{tag}.long-lines@client.example.test>\n"
        "References: <first@client.example.test>\n"
        "    <second@client.example.test> <third@client.example.test>\n"
        "MIME-Version: 1.0\n"
        "Content-Type: multipart/mixed;\n"
        f' boundary="{BOUNDARY}"\n'
        "\n"
        "This is a multi-part message in MIME format.\n"
        f"--{BOUNDARY}\n"
        "Content-Type: text/plain; charset=utf-8\n"
        "Content-Transfer-Encoding: 8bit\n"
        "\n"
        "Grüße aus Köln: żółć, Ελληνικά, 日本語, emoji 📨.\n"
        ".\n"
        ". a line starting with a dot\n"
        "..two dots\n"
        "...\n"
        + "a" * 998 + "\n"                       # longest legal line, plain
        + "." + "b" * 997 + "\n"                 # longest legal line starting with "."
        + ".\n"
        + "é" * 499 + "\n"                       # 998 octets of 8-bit text
        + "\n"
        "end of text\n"
        f"--{BOUNDARY}\n"
        "Content-Type: application/octet-stream; name=\"random.bin\"\n"
        "Content-Transfer-Encoding: base64\n"
        "Content-Disposition: attachment; filename=\"random.bin\"\n"
        "\n"
    ).encode("utf-8")
    return head + attachment + f"--{BOUNDARY}--\n".encode()


def crlf(message):
    return message.replace(b"\n", b"\r\n")


def strip_trace(stored):
    """The stored message less the leading trace fields (with their continuation
    lines) that qpsmtpd, Postfix or Exim prepended; (names stripped, rest)."""
    pos, names = 0, []
    while True:
        end = stored.find(b"\n", pos) + 1
        name = stored[pos:end].split(b":", 1)[0].strip().lower()
        if not end or name not in TRACE_FIELDS:
            return names, stored[pos:]
        names.append(name.decode())
        pos = end
        while stored[pos:pos + 1] in (b" ", b"\t"):
            pos = stored.find(b"\n", pos) + 1


def assert_identical(got, want):
    """Byte-for-byte equality, reported as the first differing line (not 13 MB of diff)."""
    if got == want:
        return
    got_lines, want_lines = got.split(b"\n"), want.split(b"\n")
    for i, (g, w) in enumerate(zip(got_lines, want_lines)):
        if g != w:
            break
    else:
        i = min(len(got_lines), len(want_lines))
    def show(lines):
        line = lines[i] if i < len(lines) else b"<none>"
        return f"{len(line)} octets: {line[:120]!r}{'...' if len(line) > 120 else ''}"
    pytest.fail(f"stored message differs (stored {len(got)} octets, sent {len(want)}) "
                f"first at line {i + 1}:\n  stored: {show(got_lines)}\n  sent:   {show(want_lines)}")


# ---------------------------------------------------------------------------- our server
def start_server(tmp_path, files=None):
    cfg = ConfigDir(tmp_path, plugins=["rcpt_ok", "queue/maildir {maildir} %l"],
                    files={"rcpthosts": "example.test", **(files or {})})
    return cfg, Server("qpsmtpd-prefork", cfg, "--children", "2", "--idle-children", "1")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One default-config server for all clients; each client has its own recipient,
    and so its own Maildir (queue/maildir DIR %l)."""
    cfg, srv = start_server(tmp_path_factory.mktemp("real-clients"))
    srv.cfg = cfg
    with srv:
        yield srv


def stored(cfg, local):
    return cfg.messages(os.path.join(cfg.maildir, local))


def bounce_address(tag):
    """Each client's envelope sender: a bounce (from Postfix or Exim, relayed through
    us) lands in that client's own <tag>-bounces Maildir."""
    return f"{tag}-bounces@example.test"


def assert_delivered_intact(server, tag, sent):
    """Exactly one message for <tag@>, identical to `sent` after the trace fields, and
    no bounce to the sender."""
    got = stored(server.cfg, tag)
    bounces = stored(server.cfg, f"{tag}-bounces")
    assert len(got) == 1 and not bounces, (
        f"{len(got)} messages for {tag}@ in the Maildir, {len(bounces)} bounces; first bounce:\n"
        + (bounces[0][:3000].decode("utf-8", "replace") if bounces else "-")
        + f"\nserver log:\n{server.log[-3000:]}")
    names, rest = strip_trace(got[0])
    assert "received" in names, names          # ours at least
    assert_identical(rest, sent)


# ---------------------------------------------------------------------------- the clients
def test_swaks(server, attachment, tmp_path):
    require_tool("swaks")
    sent = long_line_message("swaks", attachment)
    # swaks ends the data with CRLF "." itself: a final line end in the file would be
    # sent as an extra empty line, so the file has none
    (tmp_path / "msg").write_bytes(sent[:-1])
    code, out = run(["swaks", "--server", "127.0.0.1", "--port", str(server.port),
                     "--helo", "client.example.test", "--from", bounce_address("swaks"),
                     "--to", "swaks@example.test",
                     "--data", f"@{tmp_path / 'msg'}", "--suppress-data"], timeout=60)
    assert code == 0, out[-3000:]
    assert_delivered_intact(server, "swaks", sent)


def test_msmtp(server, attachment, tmp_path):
    require_tool("msmtp")
    sent = long_line_message("msmtp", attachment)
    rc = tmp_path / "msmtprc"
    rc.write_text("defaults\n")
    rc.chmod(0o600)
    code, out = run(["msmtp", f"--file={rc}", "--host=127.0.0.1", f"--port={server.port}",
                     "--auth=off", "--tls=off", "--domain=client.example.test",
                     f"--from={bounce_address('msmtp')}",
                     "--", "msmtp@example.test"], input=sent, timeout=60)
    assert code == 0, out[-3000:]
    assert_delivered_intact(server, "msmtp", sent)


def test_smtplib(server, attachment):
    sent = long_line_message("smtplib", attachment)
    with smtplib.SMTP("127.0.0.1", server.port, local_hostname="client.example.test", timeout=60) as s:
        refused = s.sendmail(bounce_address("smtplib"), ["smtplib@example.test"], crlf(sent),
                             mail_options=["BODY=8BITMIME"])
    assert refused == {}
    assert_delivered_intact(server, "smtplib", sent)


def test_aiosmtplib(server, attachment):
    aiosmtplib = pytest.importorskip("aiosmtplib", reason="pip install aiosmtplib (pyproject.toml test extra)")
    sent = long_line_message("aiosmtplib", attachment)

    async def send():
        return await aiosmtplib.send(sent, sender=bounce_address("aiosmtplib"),
                                     recipients=["aiosmtplib@example.test"],
                                     hostname="127.0.0.1", port=server.port,
                                     local_hostname="client.example.test",
                                     use_tls=False, start_tls=False, timeout=60)
    errors, reply = asyncio.run(send())
    assert errors == {}, errors
    assert "Queued" in reply, reply
    assert_delivered_intact(server, "aiosmtplib", sent)


def test_postfix_relay(server, attachment):
    require_tool("postfix")
    sent = long_line_message("postfix", attachment)
    with PostfixRelay(server.port) as pf:
        code, out = pf.submit(sent, "postfix@example.test", sender=bounce_address("postfix"))
        assert code == 0, f"sendmail: {out}\n{pf.log()}"

        def done():
            return (stored(server.cfg, "postfix") or stored(server.cfg, "postfix-bounces")) \
                and "Mail queue is empty" in pf.queue()
        try:
            wait_until(done, timeout=40, interval=0.1, what="Postfix to deliver and empty its queue")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nqueue: {pf.queue()}\nmaillog: {pf.log()}") from None
        assert "status=sent" in pf.log()
    assert_delivered_intact(server, "postfix", sent)


@pytest.fixture
def exim(server):
    exim_bin = service_env("QPT_EXIM_BIN")
    require_tool("exim")
    client = EximClient(exim_bin, server.port)
    try:
        yield client
    finally:
        client.cleanup()


def test_exim_smarthost(server, attachment, exim):
    sent = long_line_message("exim", attachment)
    code, out = exim.submit(sent, "exim@example.test", sender=bounce_address("exim"))
    log = exim.mainlog()
    assert code == 0, f"exim: {out}\n{log}"
    assert "=> exim@example.test" in log and " Completed" in log, log
    assert " ** " not in log, log                 # no failed delivery, so no bounce
    assert exim.queue_count() == 0, log
    assert_delivered_intact(server, "exim", sent)


# ---------------------------------------------------------------------------- line limits
def message_with_line(tag, line):
    return (f"From: <sender@example.test>\nTo: <{tag}@example.test>\nSubject: {tag}\n"
            f"Message-ID: <{tag}@client.example.test>\n\nbefore\n").encode() + line + b"\nafter\n"


def smtplib_send(port, tag, message):
    """Send with smtplib (which dot-stuffs); returns None when accepted, else (code, reply)."""
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.example.test", timeout=60) as s:
        try:
            s.sendmail(SENDER, [f"{tag}@example.test"], crlf(message))
        except smtplib.SMTPDataError as exc:
            return exc.smtp_code, exc.smtp_error.decode("utf-8", "replace")
    return None


def assert_accepted(cfg, port, tag, line):
    message = message_with_line(tag, line)
    assert smtplib_send(port, tag, message) is None
    got = stored(cfg, tag)
    assert len(got) == 1
    assert_identical(strip_trace(got[0])[1], message)


def assert_refused(cfg, port, tag, line):
    reply = smtplib_send(port, tag, message_with_line(tag, line))
    assert reply is not None, "accepted"
    code, text = reply
    assert code == 554 and text.startswith("5.6.0 "), reply
    assert stored(cfg, tag) == []


def test_dot_stuffed_999_octet_line_is_accepted(server):
    """999 octets starting with "." go out as 1000 + CRLF; the dot does not count."""
    assert_accepted(server.cfg, server.port, "dot999", b"." + b"d" * 998)


@pytest.mark.parametrize("size", [300_000, 5_000_000], ids=["300KB", "5MB"])
def test_huge_lines_accepted_by_default(server, size):
    assert_accepted(server.cfg, server.port, f"default{size}", b"L" * size)


@pytest.mark.parametrize("size", [300_000, 5_000_000], ids=["300KB", "5MB"])
def test_huge_lines_accepted_with_limit_0(tmp_path, size):
    """`data_line_limit 0` is documented as unlimited."""
    cfg, srv = start_server(tmp_path, files={"data_line_limit": "0"})
    with srv:
        assert_accepted(cfg, srv.port, "unlimited", b"." + b"L" * size)


def test_opt_in_limit_1000(tmp_path):
    """With `data_line_limit 1000` (octets with CRLF) a 1001-octet line is refused, but a
    998-octet line starting with "." (999 + CRLF on the wire) is within it; the refused
    message is not delivered."""
    cfg, srv = start_server(tmp_path, files={"data_line_limit": "1000"})
    with srv:
        assert_refused(cfg, srv.port, "over", b"x" * 1001)
        assert_refused(cfg, srv.port, "overdot", b"." + b"x" * 1000)
        assert_accepted(cfg, srv.port, "dot998", b"." + b"y" * 997)
        assert_accepted(cfg, srv.port, "plain998", b"z" * 998)
