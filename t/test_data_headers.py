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
