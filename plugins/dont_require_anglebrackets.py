"""dont_require_anglebrackets - accept MAIL FROM / RCPT TO addresses without <>.

RFC 5321 requires `MAIL FROM:<user@example.com>`; some old or broken clients send
`MAIL FROM:user@example.com`, which qpsmtpd answers with
`501 could not parse your mail from command`. With this plugin the brackets are
added before parsing, so `MAIL FROM:ask@perl.org` gets
`250 <ask@perl.org>, sender OK - ...`. ESMTP parameters after a bare address
still work (`MAIL FROM:a@b.example SIZE=100`).

Each repair costs the connection 2 karma points (see karma): real mail software
uses brackets.

Arguments: none.  Hooks: mail_pre, rcpt_pre (OK with the bracketed path; DECLINED
when the brackets are already there).  Config files: none.
Example config/plugins line:  dont_require_anglebrackets
"""

from qpsmtpd_py.api import DECLINED, LOGINFO, OK, Plugin


class DontRequireAnglebrackets(Plugin):
    arguments = ()                # none but loglevel: anything else stops start-up

    def hook_mail_pre(self, transaction, path, params=None):
        return self._bracket(path, "sender")

    def hook_rcpt_pre(self, transaction, path, params=None):
        return self._bracket(path, "recipient")

    def _bracket(self, path, what):
        if path.startswith("<") and path.endswith(">"):
            return DECLINED
        self.log(LOGINFO, f"fail, added missing <> to {what} {path[:100]}")
        self.adjust_karma(-2)
        return OK, f"<{path}>"
