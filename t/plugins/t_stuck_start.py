"""t_stuck_start - test plugin: the first worker to start after MARKER appears hangs
in its post-fork hook (a worker stuck while starting); it removes MARKER, so the
workers after it start normally.

Arguments: MARKER
"""

import os
import time

from qpsmtpd_py.api import DECLINED, Plugin


class TStuckStart(Plugin):
    def register(self, marker):
        self.marker = marker

    def hook_post_fork(self, transaction):
        try:
            os.unlink(self.marker)          # exactly one process wins
        except FileNotFoundError:
            return DECLINED
        time.sleep(60)
        return DECLINED
