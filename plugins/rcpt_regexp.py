"""rcpt_regexp - answer recipients by the first matching line of config/rcpt_regexp.

Config file rcpt_regexp, one rule a line:  PATTERN RETCODE [comment ...]
  PATTERN   /regex/ : a regular expression searched case-insensitively in the
                      lower-cased user@host (anchor it with ^ and $)
            !/regex/: the recipients the regular expression does NOT match
            user@host or @host : that address / that domain (case-insensitive)
  RETCODE   a hook return code: OK, DENY, DENYSOFT, DENY_DISCONNECT,
            DENYSOFT_DISCONNECT or DECLINED (DONE is refused: nothing would answer)
  comment   the reply text for DENY... (qpsmtpd's default text when empty)
The first matching line wins; no match is DECLINED. Lines with a bad regular
expression, no RETCODE or an unknown one are logged with file and line and skipped.
Syntax shared with the badrcptto family: qpsmtpd_py/helpers/addrlist.py.

OK accepts the recipient at once (later rcpt plugins, rcpt_ok included, do not
run), so use OK only for addresses of your own domains; DECLINED passes the
recipient on. Recipients without a host (<postmaster>) are DECLINED.

The file holds regular expressions: keep it writable by trusted users only.

Example config/rcpt_regexp:
  me@myhost.org           OK       Accepting mail
  /^user\\d+@doma\\.in$/    OK       Accepting mail
  info@myhost.com         DENY     User not found.
  /^unused@.*/            DENY     User not found.
  /^.*$/                  DECLINED Fall through to next rcpt plugin

Hooks: rcpt. Example config/plugins line:  rcpt_regexp
"""

from qpsmtpd_py.api import (
    DECLINED, DONE, LOGDEBUG, LOGINFO, Plugin, address_list, return_code, return_name,
)


def parse_retcode(text):
    """'DENY No such user' -> (DENY, 'No such user'); ValueError when unusable."""
    parts = text.split(None, 1)
    if not parts:
        raise ValueError("no return code")
    code = return_code(parts[0])
    if code is None:
        raise ValueError(f"'{parts[0]}' is not a valid return code")
    if code == DONE:
        raise ValueError("DONE would leave the client without an answer")
    return code, (parts[1].strip() if len(parts) > 1 else "")


class RcptRegexp(Plugin):
    arguments = ()                # none but loglevel: anything else stops start-up

    config_name = "rcpt_regexp"

    def hook_rcpt(self, transaction, rcpt, params=None):
        if not rcpt.user or not rcpt.host:
            return DECLINED
        rules = address_list(self, self.config_name, regex="slashes", parse=parse_retcode)
        entry = rules.match(rcpt)
        if entry is None:
            self.log(LOGDEBUG, f"no rule for {rcpt.address}")
            return DECLINED
        code, comment = entry.data
        self.log(LOGINFO, f"{entry.token} ({entry.line.origin}) matched {rcpt.address}, "
                 f"returning {return_name(code)}")
        return (code, comment) if comment else code
