"""t_capture - test plugin: a queue that keeps each message in memory.

For in-process sessions (t/inproc.py): every queued message is appended to the
connection note `t_capture` as a dict with sender, recipients, the header as
text, the body (bytes, LF line ends) and the whole message as the engine hands
it to a queue plugin. Answers `250 Queued`.
"""

from qpsmtpd_py.api import OK, Plugin


class TCapture(Plugin):
    def hook_queue(self, transaction):
        message = b"".join(transaction.iter_message())
        header = message.split(b"\n\n", 1)[0].decode("utf-8", "surrogateescape")
        self.connection.notes.setdefault("t_capture", []).append({
            "sender": str(transaction.sender),
            "recipients": [str(r) for r in transaction.recipients],
            "header": header,
            "body": transaction.body_bytes(),
            "message": message,
            "size": transaction.data_size,
        })
        return OK, "Queued"
