"""t_slow - test plugin: long work in the data_post hook (liveness tests).

Arguments: SECONDS [keepalive]
With `keepalive` it works in 0.2 s steps and calls self.keepalive() after each
(a well-behaved slow scan); without, it sleeps SECONDS in one go (a stuck plugin).
"""

import time

from qpsmtpd_py.api import DECLINED, Plugin


class TSlow(Plugin):
    def register(self, seconds, *flags):
        self.seconds = float(seconds)
        self.keep = "keepalive" in flags

    def hook_data_post(self, transaction):
        if not self.keep:
            time.sleep(self.seconds)
            return DECLINED
        deadline = time.monotonic() + self.seconds
        while time.monotonic() < deadline:
            time.sleep(0.2)
            self.keepalive()
        return DECLINED
