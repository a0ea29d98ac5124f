"""rcpt_map - answer the recipients of one domain from a map file.

Arguments (key/value pairs; domain and file are required):
  domain NAME        the domain this instance answers for (case-insensitive);
                     recipients in other domains are DECLINED
  file MAP           the map file: an absolute path, or a name looked up like a
                     config file (config dirs), then relative to the working dir
  default CODE[=MSG] the answer for addresses of the domain that are not in the
                     map; MSG cannot hold spaces, so every _ becomes a space.
                     Default: DENY=No_such_user.  ->  550 No such user.

Map file, one address a line:  ADDRESS RETCODE [comment ...]
  me@example.org           OK
  you@example.org          OK
  info@example.org         DENY     User not found.
Addresses are compared case-insensitively; RETCODE is a hook return code (OK,
DENY, DENYSOFT, DENY_DISCONNECT, DENYSOFT_DISCONNECT, DECLINED); the comment
(default "No such user.") is the reply text. Lines with no or an unknown RETCODE,
or an ADDRESS outside the domain, are logged with file and line and skipped.

The map is read at start-up (a missing or empty map stops the server) and again
whenever the file changes (checked at every recipient); a changed map that is
missing or empty is logged and the previous map kept. Use rcpt_map:2 ... for more
domains (each instance has its own map).

Hooks: rcpt. Load it before rcpt_ok (OK accepts the recipient at once).
Example config/plugins line:
  rcpt_map domain example.org file map_example_org default DENY=User_unknown
"""

import os

from qpsmtpd_py.api import (
    DECLINED, DONE, LOGDEBUG, LOGERROR, LOGINFO, Checked, ConfigLine, Keyword, Path, Plugin,
    Text, return_code, return_name,
)

DEFAULT_MESSAGE = "No such user."


def parse_default(text):
    """'DENY=No_such_user.' -> (DENY, 'No such user.')."""
    code_text, _sep, msg = text.partition("=")
    code = return_code(code_text)
    if code is None or code == DONE:
        raise ValueError(f"Not a valid constant for 'default' arg: {code_text}")
    return code, (msg or DEFAULT_MESSAGE).replace("_", " ")


class RcptMap(Plugin):
    arguments = (
        Keyword("domain", Text(), None, "the domain this instance answers for", required=True,
                metavar="NAME"),
        Keyword("file", Path(), None, "the map file: an absolute path or a name in the config "
                "dirs", required=True, metavar="MAP"),
        Keyword("default", Checked(parse_default, "CODE or CODE=MSG (_ for spaces)", "CODE=MSG"),
                "DENY=No_such_user.", "the answer for unlisted addresses"),
    )

    def register(self, *args):
        self.domain = self.args["domain"].lower()
        self.default = self.args["default"]
        self.path = self._find(self.args["file"])
        self.state = {"signature": None, "map": {}}
        if not self._load(startup=True):
            raise ValueError(f"Empty map file {self.path}")
        self.log(LOGDEBUG, f"using map {self.path} for domain {self.domain}")

    def _find(self, name):
        if os.path.isabs(name):
            return name
        found = self.app.config.path(name)
        return found or os.path.abspath(name)

    def _load(self, startup=False):
        """(Re-)read the map when the file changed; False when it gave nothing."""
        try:
            st = os.stat(self.path)
            with open(self.path, "rb") as fh:
                raw = fh.read().decode("utf-8", "surrogateescape")
        except OSError as exc:
            if startup:
                raise ValueError(f"cannot read map file {self.path}: {exc}")
            self.log(LOGERROR, f"cannot read map file {self.path}: {exc}; keeping the old map")
            return False
        new = {}
        for lineno, text in enumerate(raw.splitlines(), 1):
            line = ConfigLine(text.strip(), self.path, lineno)
            if not line or line.startswith("#"):
                continue
            entry = self._parse_line(line)
            if entry is not None:
                new.setdefault(entry[0], entry[1])
        self.state["signature"] = (st.st_mtime_ns, st.st_size, st.st_ino)
        if not new:
            if not startup:
                self.log(LOGERROR, f"map file {self.path} is empty; keeping the old map")
            return False
        self.state["map"] = new
        return True

    def _parse_line(self, line):
        parts = line.split(None, 2)
        address = parts[0].lower()
        if len(parts) < 2:
            self.log(LOGERROR, f"{line.origin}: no return code; line skipped")
            return None
        code = return_code(parts[1])
        if code is None or code == DONE:
            self.log(LOGERROR, f"{line.origin}: '{parts[1]}' is not a valid return code; line skipped")
            return None
        if address.rpartition("@")[2] != self.domain:
            self.log(LOGERROR, f"{line.origin}: {address} is not in domain {self.domain}; line skipped")
            return None
        message = parts[2].strip() if len(parts) > 2 else DEFAULT_MESSAGE
        return address, (code, message)

    def _fresh_map(self):
        try:
            st = os.stat(self.path)
            signature = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            signature = None
        if signature != self.state["signature"]:
            self.log(LOGINFO, f"map file {self.path} changed, reloading")
            self._load()
            self.state["signature"] = signature
        return self.state["map"]

    def hook_rcpt(self, transaction, rcpt, params=None):
        if not rcpt.user or not rcpt.host or rcpt.host.lower() != self.domain:
            return DECLINED
        address = f"{rcpt.user}@{rcpt.host}".lower()
        code, message = self._fresh_map().get(address, self.default)
        self.log(LOGINFO, f"{address}: {return_name(code)}")
        if code == DECLINED:
            return DECLINED
        return code, message
