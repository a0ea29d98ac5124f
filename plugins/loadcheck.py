"""loadcheck - refuse new connections while the machine is too busy.

At connect the 1-minute load average is compared with `max_load`; above it the
client gets

  450 Server load too high, please try again later.

and comes back later, so a loaded machine (a spam run, a stuck disk) is not pushed
over the edge. The load is read from /proc/loadavg (Linux), /kern/loadavg (BSD,
scaled by its fourth field) or else the output of `uptime`, and kept for
`cache_time` seconds.

Arguments (name/value pairs, as qpsmtpd):
  max_load N      the highest load that is still served, default 7
  cache_time S    seconds a load reading is used, default 10
  uptime PATH     the uptime program for systems without a loadavg file, default
                  /usr/bin/uptime
  loadavg PATH    the file to read, default /proc/loadavg, then /kern/loadavg
Hooks: connect.  Example:  loadcheck max_load 12 cache_time 30

When the load cannot be read at all the connection is served (logged): a broken
probe must not stop the mail.
"""

import os
import re
import subprocess

from qpsmtpd_py.api import (
    DECLINED, DENYSOFT, LOGDEBUG, LOGERROR, LOGWARN, Keyword, Number, Path, Plugin,
)

_UPTIME = re.compile(r"aver\S*:?\s+(\d+(?:[.,]\d+)?)")


class LoadCheck(Plugin):
    arguments = (
        Keyword("max_load", Number(min=0), 7.0, "the highest load still served"),
        Keyword("cache_time", Number(min=0, unit="seconds"), 10.0, "how long a reading is used"),
        Keyword("uptime", Path(), "/usr/bin/uptime", "the uptime program (no loadavg file)"),
        Keyword("loadavg", Path(), None, "the load file (default /proc/loadavg, /kern/loadavg)"),
    )

    def register(self, *args):
        self.max_load = self.args["max_load"]
        self.cache_time = self.args["cache_time"]
        self.reading = (None, float("-inf"))          # (load, read at)

    def hook_connect(self, transaction):
        load, when = self.reading
        now = self.app.clock.monotonic()
        if load is None or now - when >= self.cache_time:
            load = self.read_load()
            if load is not None:
                self.reading = (load, now)
        if load is None:
            return DECLINED
        if load > self.max_load:
            self.log(LOGERROR, f"fail, local load too high: {load:g}")
            return DENYSOFT, "Server load too high, please try again later."
        self.log(LOGDEBUG, f"pass, load {load:g}")
        return DECLINED

    def read_load(self):
        paths = [self.args["loadavg"]] if self.args["loadavg"] else ["/proc/loadavg", "/kern/loadavg"]
        for path in paths:
            if not os.access(path, os.R_OK):
                continue
            try:
                with open(path) as fh:
                    fields = fh.read().split()
                if path.endswith("/kern/loadavg") and len(fields) >= 4:
                    return float(fields[0]) / float(fields[3])        # fixed-point scale
                return float(fields[0])
            except (OSError, ValueError, IndexError, ZeroDivisionError) as exc:
                self.log(LOGWARN, f"error, cannot read {path}: {exc}")
                return None
        try:
            out = subprocess.run([self.args["uptime"]], capture_output=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.log(LOGWARN, f"error, cannot run {self.args['uptime']}: {exc}")
            return None
        match = _UPTIME.search(out.decode("utf-8", "replace"))
        if not match:
            self.log(LOGWARN, f"error, no load average in {self.args['uptime']}'s output")
            return None
        return float(match.group(1).replace(",", "."))
