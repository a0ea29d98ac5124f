"""quit_fortune - say goodbye to HELO clients with a fortune cookie.

When a client that greeted with HELO (or never greeted) sends QUIT, the 221 reply
carries a short fortune from /usr/games/fortune (Debian package fortune-mod):

  221-mx.example.com closing connection.
  221-  / Water, taken in moderation cannot hurt anybody.
  221   / 		-- Mark Twain

EHLO clients are "probably too sophisticated to enjoy the fun" (qpsmtpd) and get
the normal `221 <me> closing connection. Have a wonderful day.`; so does everyone
when fortune is not installed or fails (it gets 5 seconds).

Arguments: none.  Config files: me.  Hooks: quit (DONE after its own 221).
Example config/plugins line:  quit_fortune
"""

import os
import subprocess

from qpsmtpd_py.api import DECLINED, DONE, LOGWARN, Plugin

FORTUNE = "/usr/games/fortune"


class QuitFortune(Plugin):
    arguments = ()                # none but loglevel: anything else stops start-up

    def hook_quit(self, transaction):
        if self.connection.hello == "ehlo" or not os.access(FORTUNE, os.X_OK):
            return DECLINED
        try:
            result = subprocess.run([FORTUNE, "-s"], stdin=subprocess.DEVNULL,
                                    capture_output=True, timeout=5)
        except (OSError, subprocess.SubprocessError) as exc:
            self.log(LOGWARN, f"error, {FORTUNE}: {exc}")
            return DECLINED
        text = result.stdout.decode("utf-8", "replace").replace("\r", "").rstrip("\n")
        if result.returncode != 0 or not text.strip():
            return DECLINED
        lines = ["  / " + "".join(c for c in line if c.isprintable() or c == "\t")
                 for line in text.split("\n")]
        self.qp.respond(221, f"{self.app.me} closing connection.", *lines[:20])
        return DONE
