"""t_store - test plugin for self.store: a counter shared by every worker.

register() (in the master, before any fork) makes the table and writes to it, so
the LMDB environment is open when the workers are forked; each HELO increments
`helo` and answers `250 count N pid P`.
"""

import os

from qpsmtpd_py.api import DONE, Plugin


class TStore(Plugin):
    def register(self, *args):
        self.table = self.store.table("t_store")
        self.table.set("loaded", "1")

    def hook_helo(self, transaction, host, *rest):
        count = self.table.incr("helo")
        self.qp.respond(250, f"count {count} pid {os.getpid()}")
        return DONE
