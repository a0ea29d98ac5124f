"""`qpsmtpd-tls-cert`: make a private CA and a server certificate for the tls plugin.

qpsmtpd's plugins/tls_cert made 1024-bit keys that OpenSSL 3 refuses ("ee key too
small"). This writes, by default into ./ssl where the tls plugin looks:

  qpsmtpd-ca.key  qpsmtpd-ca.crt          the CA (key mode 0600)
  qpsmtpd-server.key  qpsmtpd-server.crt  RSA 2048 (or P-256 with --key-type ec),
                                          signed by the CA, host name in the SAN

Existing files are kept unless --force is given.
"""

import argparse
import datetime
import ipaddress
import os
import socket
import sys

try:            # the tls-cert extra; main() says so when it is missing
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
except ImportError as exc:
    MISSING = exc
else:
    MISSING = None

FILES = ("qpsmtpd-ca.key", "qpsmtpd-ca.crt", "qpsmtpd-server.key", "qpsmtpd-server.crt")


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="qpsmtpd-tls-cert",
        description="Create a CA and a server certificate for the qpsmtpd_py tls plugin.")
    parser.add_argument("--dir", default="ssl", help="output directory (default: ./ssl)")
    parser.add_argument("--host", default=None,
                        help="server host name (default: this host's fully qualified name)")
    parser.add_argument("--san", action="append", default=[], metavar="NAME_OR_IP",
                        help="another DNS name or IP address for the certificate (repeatable)")
    parser.add_argument("--key-type", choices=("rsa", "ec"), default="rsa",
                        help="rsa: 2048-bit RSA (default, widest compatibility); ec: P-256")
    parser.add_argument("--days", type=int, default=825, help="validity in days (default 825)")
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    return parser.parse_args(argv)


def new_key(kind):
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "qpsmtpd_py"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _san(names):
    entries = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def make_certificates(host, extra_names=(), key_type="rsa", days=825):
    """(ca_key, ca_cert, server_key, server_cert) for `host` (+ extra SAN entries)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=days)
    ca_key = new_key(key_type)
    ca_name = _name(f"qpsmtpd_py CA for {host}")
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256()))
    server_key = new_key(key_type)
    names = [host] + [n for n in extra_names if n != host]
    server_cert = (
        x509.CertificateBuilder().subject_name(_name(host)).issuer_name(ca_name)
        .public_key(server_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_san(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256()))
    return ca_key, ca_cert, server_key, server_cert


def _key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path, data, mode):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, mode)


def write_certificates(directory, host, extra_names=(), key_type="rsa", days=825, force=False):
    """Create the four files in `directory`; returns their paths."""
    paths = [os.path.join(directory, name) for name in FILES]
    existing = [p for p in paths if os.path.exists(p)]
    if existing and not force:
        raise FileExistsError(f"{', '.join(existing)} exist(s); use --force to replace")
    os.makedirs(directory, mode=0o755, exist_ok=True)
    ca_key, ca_cert, server_key, server_cert = make_certificates(host, extra_names, key_type, days)
    pem = serialization.Encoding.PEM
    _write(paths[0], _key_pem(ca_key), 0o600)
    _write(paths[1], ca_cert.public_bytes(pem), 0o644)
    _write(paths[2], _key_pem(server_key), 0o600)
    _write(paths[3], server_cert.public_bytes(pem), 0o644)
    return paths


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if MISSING is not None:
        sys.stderr.write("qpsmtpd-tls-cert needs the Python package cryptography: pip install "
                         f"'qpsmtpd_py[tls-cert]' (Debian: apt-get install python3-cryptography) "
                         f"({MISSING})\n")
        return 1
    host = args.host or socket.getfqdn()
    try:
        paths = write_certificates(args.dir, host, args.san, args.key_type, args.days, args.force)
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"qpsmtpd-tls-cert: {exc}\n")
        return 1
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
