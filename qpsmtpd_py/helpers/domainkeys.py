"""DomainKeys (RFC 4870, historic): canonicalization, signing and verifying of the
DomainKey-Signature header field, for the domainkeys and domainkeys_sign plugins.

A signature covers the header fields below it (all of them, or those named in h=;
our signer names all but the trace fields: Received, Return-Path,
Authentication-Results, Delivered-To)
and the body, canonicalized `simple` (unchanged) or `nofws` (every space, tab, CR and
LF removed from each line, header lines unfolded first); empty lines at the end of
the body are ignored. The algorithm is rsa-sha1 over that text.
"""

import base64
import re

try:            # the dkim extra; the domainkeys plugins name it when it is missing
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
except ImportError:     # importable without it: the plugins name the missing extra
    InvalidSignature = hashes = serialization = padding = rsa = None

_WSP = re.compile(rb"[ \t\r\n]")
# trace fields a signer leaves out of h= (they change or are replaced on the way)
UNSIGNED = {b"received", b"return-path", b"authentication-results", b"delivered-to"}


class DomainKeysError(Exception):
    """A signature or key that cannot be used (the text says why)."""


def split_message(message):
    """CRLF message bytes -> ([(name, raw field bytes incl. folding, no final CRLF)], body)."""
    head, sep, body = message.partition(b"\r\n\r\n")
    if not sep:
        head, body = message, b""
    fields = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1][1] += b"\r\n" + line
        elif line:
            fields.append([line.split(b":", 1)[0].strip(), line])
    return [tuple(f) for f in fields], body


def canonical(fields, body, method):
    """The text a signature covers: the chosen header fields, CRLF, the body."""
    out = []
    for _name, raw in fields:
        if method == "nofws":
            out.append(_WSP.sub(b"", raw) + b"\r\n")
        else:
            out.append(raw + b"\r\n")
    lines = body.split(b"\r\n")
    if method == "nofws":
        lines = [_WSP.sub(b"", line) for line in lines]
    while lines and lines[-1] == b"":
        lines.pop()
    return b"".join(out) + b"\r\n" + b"".join(line + b"\r\n" for line in lines)


def parse_tags(text):
    tags = {}
    for part in text.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            tags.setdefault(key.strip().lower(), re.sub(r"\s+", "", value) if key.strip() == "b"
                            else value.strip())
    return tags


def covered(fields, index, header_list=None):
    """The fields below the signature at `index`, only those in h= if given."""
    below = fields[index + 1:]
    if header_list:
        wanted = {h.strip().lower().encode() for h in header_list.split(":")}
        below = [f for f in below if f[0].lower() in wanted]
    return below


def sign(message, domain, selector, private_key_pem, method="nofws"):
    """The value of a DomainKey-Signature for `message` (CRLF bytes), to be prepended."""
    fields, body = split_message(message)
    key = serialization.load_pem_private_key(private_key_pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise DomainKeysError("DomainKeys needs an RSA key")
    fields = [f for f in fields if f[0].lower() not in UNSIGNED]
    names = ":".join(dict.fromkeys(name.decode("ascii", "replace").lower() for name, _ in fields))
    data = canonical(fields, body, method)
    signature = key.sign(data, padding.PKCS1v15(), hashes.SHA1())   # noqa: S303 (RFC 4870 is SHA-1)
    b = base64.b64encode(signature).decode()
    return f"a=rsa-sha1; q=dns; c={method}; s={selector}; d={domain}; h={names};\n b={b}"


def public_key(record):
    """(key, tags) from a selector record `k=rsa; p=...` (t=y: testing)."""
    tags = parse_tags(record)
    if tags.get("k", "rsa").lower() != "rsa":
        raise DomainKeysError(f"unknown key type k={tags['k']}")
    if not tags.get("p"):
        raise DomainKeysError("key revoked")
    try:
        key = serialization.load_der_public_key(base64.b64decode(tags["p"]))
    except (ValueError, TypeError) as exc:
        raise DomainKeysError(f"bad key: {exc}") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise DomainKeysError("not an RSA key")
    return key, tags


def verify(message, signature_tags, index, key):
    """True when the signature (tags of the field at `index`) verifies with `key`."""
    fields, body = split_message(message)
    method = signature_tags.get("c", "simple").lower()
    if method not in ("simple", "nofws"):
        raise DomainKeysError(f"unknown canonicalization c={method}")
    data = canonical(covered(fields, index, signature_tags.get("h")), body, method)
    try:
        signature = base64.b64decode(signature_tags.get("b", ""), validate=True)
        key.verify(signature, data, padding.PKCS1v15(), hashes.SHA1())   # noqa: S303
    except (InvalidSignature, ValueError):
        return False
    return True
