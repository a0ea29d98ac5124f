"""What the stand-in virus scanners "find": the EICAR test string, in the file
itself or in any MIME part once decoded (base64, quoted-printable), and zip
attachments flagged as encrypted. Shared by the scripts of this directory."""

import email
import email.policy
import os
import sys

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
NAME = "EICAR-Test-File"


def record():
    """Append `pid argv...` to $QPT_STUB_LOG, so tests can check the command line."""
    log = os.environ.get("QPT_STUB_LOG")
    if log:
        with open(log, "a") as fh:
            fh.write(" ".join([str(os.getpid()), os.path.basename(sys.argv[0]), *sys.argv[1:]]) + "\n")


def scan(path):
    """(virus names, password-protected zip seen) for the file at path."""
    with open(path, "rb") as fh:
        raw = fh.read()
    names, locked = [], False
    if EICAR in raw:
        names.append(NAME)
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.compat32)
        for part in msg.walk():
            if part.is_multipart():
                continue
            payload = part.get_payload(decode=True) or b""
            if EICAR in payload and NAME not in names:
                names.append(NAME)
            if payload[:4] == b"PK\x03\x04" and payload[6] & 1:
                locked = True
    except Exception:
        pass
    return names, locked
