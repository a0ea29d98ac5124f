"""TLS helpers for the tests: one CA + server certificate per test run, client
contexts that verify it, and STARTTLS on a harness Client."""

import os
import shutil
import ssl

from qpsmtpd_py.cli.tlscert import write_certificates

HOST = "mx.example.test"


def make_certs(directory, key_type="rsa"):
    """CA and server certificate for mx.example.test, localhost and 127.0.0.1."""
    write_certificates(directory, HOST, ["localhost", "127.0.0.1"], key_type=key_type)
    return directory


def install_certs(certs, config):
    """Copy the certificates to <config dir>/ssl, where the tls plugin looks by default."""
    target = os.path.join(config.dir, "ssl")
    shutil.copytree(certs, target, dirs_exist_ok=True)
    return target


def client_context(certs, **versions):
    context = ssl.create_default_context(cafile=os.path.join(certs, "qpsmtpd-ca.crt"))
    for key, value in versions.items():
        setattr(context, key, value)
    return context


def starttls(client, certs, hostname=HOST, **versions):
    """STARTTLS on a harness Client; returns the 220 text and leaves client on TLS."""
    code, text = client.cmd("STARTTLS")
    assert code == 220, text
    assert client.buf == b""
    client.sock = client_context(certs, **versions).wrap_socket(client.sock, server_hostname=hostname)
    return text
