"""queue/discard - accept every message and drop it (benchmarks and tests only).

Never use it on a real server: the client is told the message was queued.
Arguments: an optional reply text (default "Queued! (discarded)"). Hooks: queue.
"""

from qpsmtpd_py.constants import OK
from qpsmtpd_py.plugin import Plugin


class Discard(Plugin):
    def register(self, *args):
        self.reply = " ".join(args) or "Queued! (discarded)"

    def hook_queue(self, transaction):
        return OK, self.reply
