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

from qpsmtpd_py.api import DONE, LOGERROR, LOGWARN, OK, AnyKeyword, Bool, Keyword, Path, Plugin

_SAFE_FILE = r"[\w./-]+"
_COMMAND = re.compile(r"^\w+$")
MAX_HELP_BYTES = 65536
FILE_NAME = Path(_SAFE_FILE, "file name of letters, digits and . _ - /")


class Help(Plugin):
    arguments = (
        Keyword("not_implemented", Bool(), False, "answer every HELP with 502 Not implemented."),
        Keyword("help_dir", FILE_NAME, "./help/", "directory of help files, one per command"),
        AnyKeyword("COMMAND", FILE_NAME, "the help file for COMMAND (without a /: in help_dir)"),
    )

    def register(self, *args):
        self.not_implemented = self.args["not_implemented"]
        self.help_dir = self.args["help_dir"]
        self.files = {}
        for name, value in self.args["COMMAND"].items():
            path = value if "/" in value else os.path.join(self.help_dir, value)
            if not os.path.exists(path):
                self.log(LOGWARN, f"No help file for command '{name}': {path}")
            self.files[name] = path

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
