"""The client's header block is delivered exactly as sent (only CRLF -> LF and the
trace fields on top), so DKIM signatures with simple canonicalization survive."""

import pytest

HEADERS = [
    b"Subject:no-space",
    b"X-Empty:",
    b"X-Blank:   ",
    b"X-Two:  two spaces before, trailing after  ",
    b"X-Spaced-Name : value",
    b"X-Tab:\ttabbed",
    b"DKIM-Signature: v=1; a=rsa-sha256; c=simple/simple; d=b.test;",
    b"\th=from:subject; bh=abc=;",
    b"  b=xyz",
    b"X-Dup: one",
    b"x-dup: two",
    b"X-8bit: caf\xc3\xa9 \xff\xfe",
    b"From: \"A\" <a@b.test>",
]


@pytest.mark.parametrize("ehlo", [True, False])
def test_header_block_is_kept_byte_for_byte(make_config, ehlo):
    srv = make_config(files={"rcpthosts": "example.test"})
    with srv.session() as c:
        if ehlo:
            c.ehlo()
        else:
            c.cmd("HELO client.test")
        c.cmd("MAIL FROM:<a@b.test>")
        c.cmd("RCPT TO:<u@example.test>")
        assert c.cmd("DATA")[0] == 354
        c.send(b"\r\n".join(HEADERS) + b"\r\n\r\nbody\r\n.\r\n")
        assert c.read_reply()[0] == 250
    (msg,) = srv.messages()
    head, body = msg.split(b"\n\n", 1)
    assert head.endswith(b"\n" + b"\n".join(HEADERS))
    assert body == b"body\n"
    added = head[:-len(b"\n".join(HEADERS))].decode()
    assert "\nReceived: from " in added and "\nAuthentication-Results: mx.example.test; auth=none\n" in added


def test_header_parsing_is_linear():
    """A field folded over 400,000 lines (issue 16 point 2) parses in time linear in
    its size: 4x the lines may cost at most ~8x the CPU (quadratic would be 16x)."""
    import time as _time

    from qpsmtpd_py.header import Header

    def cost(lines):
        text = "Subject: x\n" + " folded\n" * lines + "To: a@b.test\n"
        start = _time.process_time()
        header = Header.parse(text)
        spent = _time.process_time() - start
        assert header.get("To") == "a@b.test" and header.get("Subject").count("\n") == lines
        return spent

    small, large = min(cost(100000) for _ in range(3)), min(cost(400000) for _ in range(3))
    assert large < 8 * small + 0.05, (small, large)
