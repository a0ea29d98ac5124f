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

from qpsmtpd_py.constants import DECLINED, DENYSOFT, LOGERROR, LOGINFO, LOGNOTICE, OK
from qpsmtpd_py.plugin import Plugin

# fd 3 is the read end of a pipe fed with the credentials: the shell only moves stdin there
_FD3 = 'exec "$0" "$@" 3<&0 0</dev/null'


class AuthCheckpassword(Plugin):
    def register(self, *args):
        super().register(*args)
        self.timeout = float(self.args.get("timeout", 15))

    def programs(self):
        """(checkpassword, true) from the arguments, else from smtpauth-checkpassword."""
        binary, true = self.args.get("checkpw"), self.args.get("true")
        if not binary and len(self.args_list) == 2:          # authcheckpassword <prog> <true>
            binary, true = self.args_list
        if not binary:
            words = (self.config("smtpauth-checkpassword") or "").split()
            if len(words) >= 2:
                binary, true = words[0], words[1]
        return binary, true

    def hook_auth_plain(self, transaction, method, user, clear, digest, ticket):
        binary, true = self.programs()
        if not binary or not true:
            self.log(LOGERROR, "skip, no checkpassword program configured")
            return DECLINED
        if not os.access(binary, os.X_OK):
            self.log(LOGERROR, f"skip, {binary} is not executable")
            return DENYSOFT, "auth_checkpassword - not available"
        data = b"\0".join((user.encode(), clear.encode(), b"%d" % int(time.time()), b""))
        try:
            returncode = run_checkpassword(binary, true, data, self.timeout)
        except subprocess.TimeoutExpired:
            self.log(LOGERROR, f"error, {binary} timed out after {self.timeout:g}s")
            return DENYSOFT, "auth_checkpassword - timeout"
        except OSError as exc:
            self.log(LOGERROR, f"error, cannot run {binary}: {exc}")
            return DENYSOFT, "auth_checkpassword - not available"
        if returncode == 0:
            self.log(LOGINFO, f"pass, {user}")
            self.connection.notes["authuser"] = user
            return OK, "auth_checkpassword"
        if returncode == 111:
            self.log(LOGNOTICE, f"error, {binary} reported a temporary failure (111)")
            return DENYSOFT, "auth_checkpassword - temporary failure"
        self.log(LOGINFO, f"fail, {user}: checkpassword exit {returncode}")
        return DECLINED, "auth_checkpassword"

    hook_auth_login = hook_auth_plain


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
