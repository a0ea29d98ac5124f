"""Warm the engine up in the master, once, before it forks children.

Python 3.11 specialises bytecode as it runs (and fills its caches) per process: a
child that is forked cold pays that again in its first session, which a growing
pool or the forkserver pays for every new child. The master runs a few SMTP
sessions through the engine first, on a private app with only rcpt_ok and
queue/discard (no configured plugin runs: nothing is delivered, stored or looked
up), from a file into /dev/null; every child then starts with warm code.
"""

import os
import shutil
import tempfile

from ..app import Qpsmtpd
from ..channel import PipeChannel
from ..config import Config
from ..session import SMTPSession
from .common import new_connection

SESSIONS = 30

_BODY = b"".join(b"Line %d of a short message.\r\n" % i for i in range(20))
_MESSAGE = (b"MAIL FROM:<warm@example.invalid>\r\nRCPT TO:<up@example.invalid>\r\nDATA\r\n"
            b"From: <warm@example.invalid>\r\nTo: <up@example.invalid>\r\n"
            b"Subject: warm-up\r\nMessage-Id: <warm@up>\r\n\r\n" + _BODY + b".\r\n")
_SESSION = (b"EHLO warm.example.invalid\r\n" + _MESSAGE + b"RSET\r\nNOOP\r\n" + _MESSAGE
            + b"HELO warm.example.invalid\r\n" + _MESSAGE + b"QUIT\r\n")


def session_from_file(app, path, client=("192.0.2.1", 40000), local=("192.0.2.2", 25)):
    """One SMTP session through `app`: the client's side read from `path`, the
    replies into /dev/null (also the unit of work of bench/first_session.py and
    bench/profile_session.py)."""
    rfd = os.open(path, os.O_RDONLY)
    wfd = os.open(os.devnull, os.O_WRONLY)
    try:
        SMTPSession(app, PipeChannel(rfd, wfd, timeout=10), new_connection(client, local)).run()
    finally:
        os.close(rfd)
        os.close(wfd)


def warm_up(sessions=SESSIONS):
    """Run `sessions` sessions through a throw-away app; never raises (a warm-up
    that fails only costs the children their cold start)."""
    work = tempfile.mkdtemp(prefix="qpsmtpd-warmup-")
    try:
        conf = os.path.join(work, "config")
        os.makedirs(conf)
        files = {"me": "warmup.invalid", "rcpthosts": "example.invalid", "loglevel": "0",
                 "spool_dir": os.path.join(work, "spool"), "plugins": "rcpt_ok\nqueue/discard"}
        for name, text in files.items():
            with open(os.path.join(conf, name), "w") as fh:
                fh.write(text + "\n")
        app = Qpsmtpd(Config([conf])).load()
        app.rdns = False
        path = os.path.join(work, "session")
        with open(path, "wb") as fh:
            fh.write(_SESSION)
        for _ in range(sessions):
            session_from_file(app, path)
        return True
    except Exception:
        return False
    finally:
        shutil.rmtree(work, ignore_errors=True)
