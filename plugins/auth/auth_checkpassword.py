"""auth/auth_checkpassword - SMTP AUTH through a DJB checkpassword program.

Arguments, or the config file smtpauth-checkpassword (`/path/checkpw /bin/true`):

  auth/auth_checkpassword checkpw /usr/bin/checkpw true /bin/true

The program gets `user\\0password\\0timestamp\\0` on file descriptor 3 (never on
its command line) and runs `true` on success: exit 0 is OK, 111 a temporary
failure (454), anything else a failed login (DECLINED, so a later auth plugin
may try). The program runs without a shell, with /dev/null as stdin/stdout and
a time limit (arg `timeout`, default 15 seconds). Debian's checkpw and vchkpw
need root to read other users' password files.

Hooks: auth-plain, auth-login (checkpassword needs the clear-text password).

Example config/plugins line:
  auth/auth_checkpassword checkpw /usr/bin/checkpw true /bin/true
"""

import os
import signal
import subprocess
import time

from qpsmtpd_py.api import (DECLINED, LOGERROR, AuthPlugin, AuthUnavailable, Keyword, Number,
                            Path, Positional)

# fd 3 is the read end of a pipe fed with the credentials: the shell only moves stdin there
_FD3 = 'exec "$0" "$@" 3<&0 0</dev/null'


class AuthCheckpassword(AuthPlugin):
    arguments = (
        Positional("checkpw", Path(), None, "the checkpassword program", keyword=True),
        Positional("true", Path(), None, "what it runs on success, e.g. /bin/true", keyword=True),
        Keyword("timeout", Number(min=0.1, unit="seconds"), 15.0, "time limit for the program"),
    )
    wrong_password = DECLINED

    def register(self, *args):
        if not all(self.programs()):
            self.log(LOGERROR, "no checkpassword program configured (arguments or "
                               "smtpauth-checkpassword); AUTH through this plugin is skipped")

    def programs(self):
        """(checkpassword, true) from the arguments, else from smtpauth-checkpassword."""
        binary, true = self.args["checkpw"], self.args["true"]
        if not binary:
            words = (self.config("smtpauth-checkpassword") or "").split()
            if len(words) >= 2:
                binary, true = words[0], words[1]
        return binary, true

    def skip_reason(self):
        if not all(self.programs()):
            return "no checkpassword program configured"
        return None

    def check(self, user, password):
        binary, true = self.programs()
        if not os.access(binary, os.X_OK):
            raise AuthUnavailable(f"{binary} is not executable")
        data = b"\0".join((user.encode(), password.encode(), b"%d" % int(time.time()), b""))
        timeout = self.args["timeout"]
        try:
            returncode = run_checkpassword(binary, true, data, timeout)
        except subprocess.TimeoutExpired:
            raise AuthUnavailable(f"{binary} timed out after {timeout:g}s")
        except OSError as exc:
            raise AuthUnavailable(f"cannot run {binary}: {exc}")
        if returncode == 111:
            raise AuthUnavailable(f"{binary} reported a temporary failure (111)")
        if returncode == 0:
            self.connection.notes["authuser"] = user
            return True
        return False


def run_checkpassword(binary, true, data, timeout):
    """Exit status of `binary true` fed `data` on fd 3; on a time-out the program and
    everything it started are killed (its own process group)."""
    proc = subprocess.Popen(["/bin/sh", "-c", _FD3, binary, true], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            close_fds=True, start_new_session=True, env={"PATH": "/usr/bin:/bin"})
    try:
        proc.communicate(data, timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    return proc.returncode
