"""virus/klez_filter - refuse messages carrying the Klez worm.

Klez mails are big: messages under 60000 bytes are not looked at. In the first 41
lines of the body, an audio/ or application/ `Content-type:` line followed by a
line starting with the base64 of a Windows executable's header
(`TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQA`) means Klez:

  552 Klez Virus Detected

No arguments (but loglevel). Hooks: data_post.
Example:
  virus/klez_filter
"""

import re

from qpsmtpd_py.api import DECLINED, DENY, LOGINFO, Plugin

MIN_SIZE = 60_000
LINES = 41
CONTENT_TYPE = re.compile(rb"^Content-type:.*(?:audio|application)", re.IGNORECASE)
EXECUTABLE = b"TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQA"


class KlezFilter(Plugin):
    arguments = ()

    def hook_data_post(self, transaction):
        if transaction.data_size < MIN_SIZE:
            return DECLINED
        seen_type = False
        fh = transaction.body_fh()
        try:
            for _ in range(LINES):
                line = fh.readline(65536)
                if not line:
                    break
                if CONTENT_TYPE.match(line):
                    seen_type = True
                elif seen_type and line.startswith(EXECUTABLE):
                    self.log(LOGINFO, "fail, Klez signature")
                    return DENY, "Klez Virus Detected"
        finally:
            transaction.body_bytes(0)
        return DECLINED
