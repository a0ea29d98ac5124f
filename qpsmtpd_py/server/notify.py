"""systemd's notify protocol (sd_notify) and watchdog, for Type=notify units.

The master tells systemd READY=1 once it serves, RELOADING=1 on SIGHUP (then
READY=1 again), STOPPING=1 when it starts shutting down, and keeps STATUS= up to
date with the pool. With WatchdogSec= it sends WATCHDOG=1 at half the interval,
from the main loop, so a wedged master gets restarted. Without NOTIFY_SOCKET
every call is a no-op.
"""

import os
import socket
import time


class Notifier:
    def __init__(self, environ=None):
        environ = os.environ if environ is None else environ
        address = environ.pop("NOTIFY_SOCKET", None)
        watchdog_usec = environ.pop("WATCHDOG_USEC", None)
        watchdog_pid = environ.pop("WATCHDOG_PID", None)
        self.sock = None
        self.address = None
        if address and (address.startswith("/") or address.startswith("@")):
            self.address = "\0" + address[1:] if address.startswith("@") else address
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.watchdog_interval = None
        if watchdog_usec and watchdog_usec.isdigit() and int(watchdog_usec) > 0:
            if not watchdog_pid or watchdog_pid == str(os.getpid()):
                self.watchdog_interval = int(watchdog_usec) / 2e6
        self.last_ping = 0.0
        self.last_status = None

    @property
    def enabled(self):
        return self.sock is not None

    def send(self, *fields):
        """Send 'KEY=value' lines in one datagram; errors are ignored (systemd may be
        restarting, and the server must go on serving)."""
        if self.sock is None:
            return False
        try:
            self.sock.sendto("\n".join(fields).encode("utf-8"), self.address)
        except OSError:
            return False
        return True

    def ready(self, status=None):
        self.last_status = status
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self):
        usec = int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1_000_000)
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading configuration")

    def stopping(self, status="stopping: finishing running sessions"):
        return self.send("STOPPING=1", f"STATUS={status}")

    def status(self, text):
        """STATUS= only when it changed."""
        if text != self.last_status:
            self.last_status = text
            self.send(f"STATUS={text}")

    def watchdog_timeout(self, now=None):
        """Seconds until the next watchdog ping is due (None: no watchdog)."""
        if self.watchdog_interval is None:
            return None
        now = time.monotonic() if now is None else now
        return max(0.0, self.last_ping + self.watchdog_interval - now)

    def ping_watchdog(self):
        if self.watchdog_interval is None or self.watchdog_timeout() > 0:
            return
        self.last_ping = time.monotonic()
        self.send("WATCHDOG=1")

    def close(self):
        """In a forked child: only the master talks to systemd."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.watchdog_interval = None
