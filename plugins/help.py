"""help - answer the HELP command from help files, or say it is not implemented.

Without this plugin HELP gives qpsmtpd's built-in 214 text. With it:

  HELP              214 Try 'HELP COMMAND' for getting help on COMMAND
  HELP MAIL         214 lines of the help file for `mail`, or
                    214 No help available for SMTP command: mail
  HELP ../x         502 Invalid command name     (only letters, digits, _)

Arguments (name/value pairs, any order):
  not_implemented 1   answer every HELP with `502 Not implemented.`
  help_dir DIR        directory of help files, one per command, named in lower
                      case (help_dir/mail); default ./help/ (relative to the
                      directory the server runs in)
  COMMAND FILE        the help text for COMMAND is FILE; a FILE without a / is
                      looked up in help_dir
File names may only contain letters, digits and . _ - /; files are read when
asked for (edits show at once), at most 64 KiB, one reply line per file line.

Hooks: help.  Example config/plugins lines:
  help help_dir /etc/qpsmtpd/help
  help not_implemented 1
"""

import os
import re

from qpsmtpd_py.constants import DONE, LOGERROR, LOGWARN, OK
from qpsmtpd_py.plugin import Plugin

_SAFE_FILE = re.compile(r"^[\w./-]+$")
_COMMAND = re.compile(r"^\w+$")
MAX_HELP_BYTES = 65536


class Help(Plugin):
    def register(self, *args):
        if len(args) % 2:
            raise ValueError("arguments must be name/value pairs "
                             "(not_implemented 1, help_dir DIR, COMMAND FILE)")
        self.not_implemented = False
        self.help_dir = "./help/"
        self.files = {}
        pairs = [(str(args[i]), str(args[i + 1])) for i in range(0, len(args), 2)]
        for name, value in pairs:
            if not _COMMAND.match(name):
                raise ValueError(f"invalid argument name '{name}'")
            if name.lower() != "not_implemented" and not _SAFE_FILE.match(value):
                raise ValueError(f"invalid characters in file name '{value}' for {name}")
            if name.lower() == "not_implemented":
                self.not_implemented = value.lower() not in ("0", "no", "false", "off")
            elif name.lower() == "help_dir":
                self.help_dir = value
        for name, value in pairs:
            if name.lower() not in ("not_implemented", "help_dir"):
                path = value if "/" in value else os.path.join(self.help_dir, value)
                if not os.path.exists(path):
                    self.log(LOGWARN, f"No help file for command '{name}': {path}")
                self.files[name.lower()] = path

    def hook_help(self, transaction, rest=""):
        if self.not_implemented:
            self.qp.respond(502, "Not implemented.")
            return DONE
        words = rest.split()
        if not words:
            return OK, "Try 'HELP COMMAND' for getting help on COMMAND"
        cmd = words[0].lower()
        if not _COMMAND.match(cmd):
            self.qp.respond(502, "Invalid command name")
            return DONE
        path = self.files.get(cmd) or os.path.join(self.help_dir, cmd)
        text = self._read(path) if os.path.isfile(path) else ""
        if not text.strip():
            return OK, f"No help available for SMTP command: {cmd}"
        return OK, *text.rstrip("\n").split("\n")

    def _read(self, path):
        try:
            with open(path, "rb") as fh:
                data = fh.read(MAX_HELP_BYTES)
        except OSError as exc:
            self.log(LOGERROR, f"failed to open help file {path}: {exc}")
            return ""
        text = data.decode("utf-8", "replace").replace("\r", "")
        return "".join(ch for ch in text if ch == "\n" or ch == "\t" or ch.isprintable())
