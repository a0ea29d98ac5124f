"""qpsmtpd_py/helpers/dkimspeed.py: dkimpy's byte conversions replaced by int.to_bytes
and int.from_bytes, checked against dkimpy's own (a fresh copy of dkim/crypto.py);
its key parsing cached; a signature made and verified with the patched module.
(t/test_dkim.py runs the plugin against opendkim.)"""

import importlib.util

import dkim
import pytest
from hypothesis import given, strategies as st

from qpsmtpd_py.helpers import dkimspeed

pytestmark = pytest.mark.no_services


def _dkimpy_crypto():
    """dkimpy's crypto module as shipped (a second copy: the first may be patched)."""
    spec = importlib.util.spec_from_file_location("dkimpy_crypto_as_shipped",
                                                  dkim.crypto.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SHIPPED = _dkimpy_crypto()


@given(st.integers(min_value=0, max_value=2 ** 4200))
def test_int2str_without_a_length_matches_dkimpy(n):
    assert dkimspeed.int2str(n) == SHIPPED.int2str(n)


@given(st.integers(min_value=0, max_value=2 ** 2048 - 1), st.integers(min_value=256, max_value=600))
def test_int2str_to_a_length_matches_dkimpy(n, length):
    assert dkimspeed.int2str(n, length) == SHIPPED.int2str(n, length)


@given(st.binary(max_size=600))
def test_str2int_matches_dkimpy(data):
    assert dkimspeed.str2int(data) == SHIPPED.str2int(data)
    assert dkimspeed.str2int(bytearray(data)) == SHIPPED.str2int(bytearray(data))


def _key_pair():
    """A fresh RSA key: (PEM private key, DKIM key record)."""
    import base64
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem, b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)


MESSAGE = b"From: a@example.test\r\nTo: b@example.test\r\nSubject: hi\r\n\r\nbody\r\n"


def test_patched_dkimpy_signs_and_verifies_and_parses_each_key_once():
    patched = dkimspeed.speed_up(dkim)
    assert dkimspeed.speed_up(dkim) is patched                     # once only
    pem, record = _key_pair()
    signature = dkim.sign(MESSAGE, b"sel", b"example.test", pem)
    dns = lambda name, timeout=5: record                          # noqa: E731
    patched.evaluate_pk.cache_clear()
    assert dkim.verify(signature + MESSAGE, dnsfunc=dns)
    assert dkim.verify(signature + MESSAGE, dnsfunc=dns)
    assert patched.evaluate_pk.cache_info().misses == 1            # parsed once, then cached
    assert not dkim.verify(signature + MESSAGE.replace(b"body", b"bodY"), dnsfunc=dns)
    other = _key_pair()[1]                                        # a rotated key
    assert not dkim.verify(signature + MESSAGE, dnsfunc=lambda name, timeout=5: other)
    assert patched.evaluate_pk.cache_info().misses == 2
