"""Becoming a daemon: the pid file, detaching, dropping root, process titles.

The order matters and lives in master.py: claim the pid file and bind while
still root, drop privileges, load the config (errors still reach the terminal),
then detach and write our pid.
"""

import fcntl
import grp
import os
import pwd
import re

_PID_PATH = re.compile(r"^/[\w/.\-]+$")


class DaemonError(Exception):
    """Start-up cannot go on; the text is for the administrator."""


# -- pid file ---------------------------------------------------------------------------
class PidFile:
    """`--pid-file`: refuses to start while a qpsmtpd lives under the pid written
    there; a stale file (dead pid, or a pid reused by another program) is taken over.

    The file is opened and locked (flock) before privileges are dropped, so the
    daemon can write its pid later as any user, and two servers started at the same
    moment cannot both win.
    """

    def __init__(self, path):
        if not _PID_PATH.match(path or ""):
            raise DaemonError(f"--pid-file {path!r}: must be an absolute path of "
                              "letters, digits, '_', '-', '.' and '/'")
        self.path = path
        self.fd = None
        self.pid = None

    def claim(self):
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise DaemonError(f"open pid file {self.path}: {exc.strerror}")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            locked = True
        except OSError:
            locked = False
        old = _read_pid(fd)
        if not locked or (old and _is_qpsmtpd(old)):
            os.close(fd)
            raise DaemonError(f"Found an already running qpsmtpd with pid {old or '?'}.")
        self.fd = fd
        os.ftruncate(fd, 0)

    def write(self, pid=None):
        self.pid = pid or os.getpid()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{self.pid}\n".encode(), 0)
        os.fsync(self.fd)

    def close_in_child(self):
        """A forked child must not keep the file open (nor the lock alive)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def remove(self):
        """Unlink the file if it still names us, or is still empty because start-up
        failed (best effort: the directory may be root's and we no longer are)."""
        if self.fd is None:
            return
        try:
            with open(self.path) as fh:
                if fh.read().strip() == ("" if self.pid is None else str(self.pid)):
                    os.unlink(self.path)
        except OSError:
            try:
                os.ftruncate(self.fd, 0)
            except OSError:
                pass
        os.close(self.fd)
        self.fd = None


def _read_pid(fd):
    data = os.pread(fd, 64, 0).decode("ascii", "replace")
    match = re.match(r"\s*(\d+)", data)
    return int(match.group(1)) if match else None


def _is_qpsmtpd(pid):
    """True when `pid` is alive and is a qpsmtpd (so a reused pid does not block us)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmdline = fh.read()
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[-1].split()[0]
    except OSError:
        return True                  # no /proc: trust the pid, as qpsmtpd does
    return state != b"Z" and b"qpsmtpd" in cmdline


# -- detaching ---------------------------------------------------------------------------
def detach():
    """--detach: fork into the background in a new session, stdio on /dev/null,
    umask 022, working directory /. Every descriptor we hold is kept (listening
    sockets, the pid file, files plugins opened)."""
    import daemon                    # python-daemon
    keep = [int(fd) for fd in os.listdir("/proc/self/fd") if int(fd) > 2]
    context = daemon.DaemonContext(working_directory="/", umask=0o022, detach_process=True,
                                   files_preserve=keep, signal_map={}, prevent_core=False)
    context.open()
    return context


# -- privileges --------------------------------------------------------------------------
def drop_privileges(user):
    """Become `user` with its primary and supplementary groups, for good.

    Called after binding (ports below 1024) and before loading plugins, so plugin
    files and everything they create belong to the unprivileged user (the master
    imports the plugin modules just before, see common.import_plugin_modules).
    """
    try:
        entry = pwd.getpwnam(user) if not str(user).isdigit() else pwd.getpwuid(int(user))
    except KeyError:
        raise DaemonError(f"unable to determine uid/gid for {user}")
    if os.geteuid() == entry.pw_uid and os.getegid() == entry.pw_gid:
        return entry
    if os.geteuid() != 0:
        raise DaemonError(f"--user {user}: only root can switch users")
    try:
        os.initgroups(entry.pw_name, entry.pw_gid)
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)
    except OSError as exc:
        raise DaemonError(f"unable to become {user}: {exc.strerror}")
    if entry.pw_uid != 0:
        try:
            os.setuid(0)
        except PermissionError:
            pass
        else:
            raise DaemonError(f"dropping privileges to {user} failed: root could be regained")
    os.environ.update(HOME=entry.pw_dir, USER=entry.pw_name, LOGNAME=entry.pw_name)
    return entry


def describe_user():
    """'smtpd (uid 100, groups smtpd,ssl-cert)' for the start-up log line."""
    uid = os.geteuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    groups = []
    for gid in [os.getegid()] + [g for g in os.getgroups() if g != os.getegid()]:
        try:
            groups.append(grp.getgrgid(gid).gr_name)
        except KeyError:
            groups.append(str(gid))
    return f"{name} (uid {uid}, groups {','.join(groups)})"


def user_exists(name):
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


# -- process titles -----------------------------------------------------------------------
try:
    from setproctitle import setproctitle as _setproctitle
except ImportError:                  # pragma: no cover - declared dependency
    _setproctitle = None


def set_title(text):
    """What `ps` shows for this process. The text may hold a client's bytes (the
    command word): anything not printable ASCII is shown as '?', so a stray byte
    can never raise here."""
    if _setproctitle is not None:
        if not (text.isascii() and text.isprintable()):     # the common case costs no loop
            text = _UNPRINTABLE.sub("?", text)
        _setproctitle(text)


_UNPRINTABLE = re.compile(r"[^ -~]")
