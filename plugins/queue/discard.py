"""queue/discard - accept every message and drop it (benchmarks and tests only).

Never use it on a real server: the client is told the message was queued.
Arguments: an optional reply text (default "Queued! (discarded)"). Hooks: queue.
"""

from qpsmtpd_py.api import OK, Plugin, Positional, Text


class Discard(Plugin):
    arguments = (
        Positional("reply", Text(), "Queued! (discarded)", "the reply text (the rest of the line)",
                   rest=True),
    )

    def register(self, *args):
        self.reply = self.args["reply"]

    def hook_queue(self, transaction):
        return OK, self.reply
