"""virus/check_for_hi_virus - refuse messages that look like the "Hi" virus: an
attachment whose Content-Type name and Content-Disposition filename differ.

The first 40 lines of the body are read; when a `Content-Type: ...name="X"` line and a
`Content-Disposition: ...filename="Y"` line are both there and X is not Y, the
message is refused:

  552 Probably the 'Hi' virus

No arguments (but loglevel). Hooks: data_post.
Example:
  virus/check_for_hi_virus
"""

import re

from qpsmtpd_py.api import DECLINED, DENY, LOGINFO, Plugin

LINES = 41              # qpsmtpd stopped after its line counter passed 40


class CheckForHiVirus(Plugin):
    arguments = ()

    def hook_data_post(self, transaction):
        ct_name = cd_name = ""
        fh = transaction.body_fh()
        try:
            for _ in range(LINES):
                line = fh.readline(65536).decode("utf-8", "surrogateescape")
                if not line:
                    break
                match = re.match(r"Content-Type: (.*)", line)
                if match and re.search(r'name="(.*?)"', match.group(1)):
                    ct_name = re.search(r'name="(.*?)"', match.group(1)).group(1)
                match = re.match(r"Content-Disposition: (.*)", line)
                if match and re.search(r'filename="(.*?)"', match.group(1)):
                    cd_name = re.search(r'filename="(.*?)"', match.group(1)).group(1)
        finally:
            transaction.body_bytes(0)
        if ct_name and cd_name and ct_name != cd_name:
            self.log(LOGINFO, f"fail, attachment names differ ({ct_name} / {cd_name})")
            return DENY, "Probably the 'Hi' virus"
        return DECLINED
