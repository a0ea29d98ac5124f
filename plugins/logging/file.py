"""logging/file - write log lines to a file, or to a command's standard input.

Config line (in config/logging, or config/plugins):

  logging/file [loglevel L] [reopen] [nosplit] [tsformat F] PATH
  logging/file [loglevel L] [reopen] [nosplit] [tsformat F] |COMMAND

Examples:
  logging/file loglevel LOGINFO /var/log/qpsmtpd/qpsmtpd.log
  logging/file /var/log/qpsmtpd/qpsmtpd.log.%Y-%m-%d
  logging/file loglevel LOGCRIT reopen |/usr/local/sbin/page-sysadmin
  logging/file loglevel LOGDEBUG tsformat %FT%T /var/log/qpsmtpd/debug.log
  logging/file:2 loglevel LOGERROR /var/log/qpsmtpd/errors.log   (a second file)

PATH (or COMMAND) may hold strftime(3) codes, and %i, a per-connection session
id (a new file for each connection). The output is reopened whenever the
expanded name changes, so `%Y-%m-%d` gives one file per day. A file is created
(mode 0640) if missing and appended to; its directory must exist. A file that
was renamed or deleted (logrotate) is noticed within a second (a line logged
in that second still goes to the old file) and reopened, so no signal is
needed (SIGUSR1 to the server also closes it at once). COMMAND is
run by /bin/sh with the log on its stdin.

Options:
  loglevel L   log lines at level L and more urgent (0-7 or LOGINFO ...);
               default: config/loglevel (LOGWARN when that file is absent)
  reopen       reopen the output once per connection, at the first line, and
               close it when the connection ends (one paging command per session)
  nosplit      open the output at most once per connection, before its first
               line, so a session is never split across two files
  tsformat F   strftime format of the time stamp; default '%a %b %d %T %Y'

Line format:  <time stamp> <host>[<pid>]: (<hook>) <plugin>: <message>
Hooks: logging (always DECLINED, so other logging plugins also get every line),
post-connection. Errors opening the output go to standard error.
"""

import os
import socket
import subprocess
import sys
import time

from qpsmtpd_py.api import (
    DECLINED, Flag, Keyword, LogLevel, Plugin, Positional, Text, line_text, session_id,
)


class File(Plugin):
    arguments = (
        Keyword("loglevel", LogLevel(), None, "log lines at this level and more urgent "
                "(default: config/loglevel)"),
        Flag("reopen", "reopen the output once per connection, close it at its end"),
        Flag("nosplit", "open the output at most once per connection"),
        Keyword("tsformat", Text(), "%a %b %d %T %Y", "strftime format of the time stamp",
                metavar="F"),
        Positional("output", Text(), None, "PATH or |COMMAND (strftime codes and %i allowed); "
                   "the rest of the line", required=True, rest=True),
    )

    def register(self, *args):
        level = self.args["loglevel"]
        self.level = self.app.loglevel if level is None else level
        self.reopen = self.args["reopen"]
        self.nosplit = self.args["nosplit"]
        self.tsformat = self.args["tsformat"]
        output = self.args["output"].strip()
        if not output or output == "|":
            raise ValueError("logging/file needs a file name or |command as its last argument")
        self.pipe = output.startswith("|")
        self.template = output[1:].strip() if self.pipe else output
        self.hostname = socket.gethostname()
        # the open output belongs to this process, not to a session
        self.out = None
        self.proc = None
        self.current = None
        self.identity = None         # (st_dev, st_ino) of the file we opened
        self.checked = None          # app clock's monotonic() at the last rotation check
        self.second = None           # the stamp and name are made once per second
        self.stamp = ""
        self.tm = None
        self.names = (None, None)    # (second and session id, expanded output name)
        self.outside_notes = {}      # stands in for connection notes outside a session

    def hook_logging(self, transaction, level, hook, plugin, msg):
        if level > self.level or plugin == self.plugin_name:
            return DECLINED
        conn = self.connection
        notes = conn.notes if conn is not None else self.outside_notes
        self.tick()
        if self.out is None or not (self.nosplit and notes.get(self.plugin_name + ":logged")):
            if not self.maybe_reopen(notes):
                return DECLINED
            notes[self.plugin_name + ":logged"] = True
        text = line_text(hook, plugin, msg).replace("\n", "\n\t")
        try:
            self.out.write(f"{self.stamp} {self.hostname}[{os.getpid()}]: {text}\n")
            self.out.flush()
        except (OSError, ValueError) as exc:
            sys.stderr.write(f"logging/file: cannot write to {self.current}: {exc}\n")
            self.close()
        return DECLINED

    def hook_post_connection(self, transaction, *args):
        if self.reopen:
            self.close()
        return DECLINED

    def tick(self):
        """The time stamp of this second (strftime once a second, not per line)."""
        now = int(time.time())
        if now != self.second:
            self.second = now
            self.tm = time.localtime(now)
            self.stamp = time.strftime(self.tsformat, self.tm)

    def output_name(self):
        """The expanded output name, made once per second and session."""
        key = (self.second, session_id(self.connection))
        if self.names[0] != key:
            name = self.template.replace("%i", key[1].replace("%", "%%"))
            self.names = (key, time.strftime(name, self.tm))
        return self.names[1]

    def maybe_reopen(self, notes):
        """Open the output when it is closed, its name changed, `reopen` wants a
        fresh one for this session, or the file was rotated away."""
        name = self.output_name()
        if (self.out is not None and name == self.current and not self.rotated()
                and not (self.reopen and not notes.get(self.plugin_name + ":reopened"))):
            return True
        self.close()
        try:
            if self.pipe:
                self.proc = subprocess.Popen(name, shell=True, stdin=subprocess.PIPE,
                                             stdout=subprocess.DEVNULL, encoding="utf-8",
                                             errors="replace")
                self.out = self.proc.stdin
            else:
                fd = os.open(name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
                self.out = os.fdopen(fd, "a", encoding="utf-8", errors="replace")
                mine = os.fstat(fd)
                self.identity = (mine.st_dev, mine.st_ino)
                self.checked = self.app.clock.monotonic()
        except OSError as exc:
            if name != self.current:
                sys.stderr.write(f"logging/file: cannot open {'|' if self.pipe else ''}{name}: {exc}\n")
            self.current = name
            return False
        self.current = name
        notes[self.plugin_name + ":reopened"] = True
        return True

    def rotated(self):
        """Is the file under our name no longer the one we write? Looked at once a
        second (a stat), not for every line."""
        if self.pipe:
            return False
        now = self.app.clock.monotonic()
        if self.checked is not None and now - self.checked < 1.0:
            return False
        self.checked = now
        try:
            disk = os.stat(self.current)
        except OSError:
            return True
        return (disk.st_dev, disk.st_ino) != self.identity

    def reopen_logs(self):
        """SIGUSR1 (after logrotate): close now; the next log line reopens the file."""
        self.close()

    def close(self):
        out, proc = self.out, self.proc
        self.out = self.proc = None
        if out is not None:
            try:
                out.close()
            except OSError:
                pass
        if proc is not None:
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass     # still draining its input; reaped by a later Popen

