"""Mail a plugin sends itself (a challenge, a notice) through the server's own queue
plugins, as if it had arrived by SMTP and been accepted.

    code, messages = queue_new_message(self, "", ["bob@example.net"], message_bytes)
    if code != OK: ...                 # the queue refused or failed: (DENYSOFT, [...])

The message is a complete one (header, blank line, body; LF or CRLF line ends).
The queue hooks run on a fresh transaction of their own, so the session's
transaction is untouched.
"""

from ..address import Address
from ..constants import DECLINED, DENYSOFT, OK
from ..header import Header
from ..transaction import Transaction


def queue_new_message(plugin, sender, recipients, message):
    """Run the `queue` hooks for a new message; returns (code, messages)."""
    if isinstance(message, str):
        message = message.encode("utf-8", "surrogateescape")
    message = message.replace(b"\r\n", b"\n")
    head, _, body = message.partition(b"\n\n")
    txn = Transaction(plugin.app.spool_dir, getattr(plugin.app, "size_threshold", 10000))
    try:
        txn.sender = Address.parse(f"<{sender}>") if sender else Address()
        for rcpt in recipients:
            address = Address.parse(f"<{rcpt}>")
            if address is None:
                return DENYSOFT, [f"bad recipient {rcpt}"]
            txn.add_recipient(address)
        txn.header = Header.parse(head.decode("utf-8", "surrogateescape") + "\n")
        txn.body_append(body)
        code, messages, _ = plugin.app.hooks.run("queue", txn)
        if code == DECLINED:
            return DENYSOFT, messages or ["no queue plugin accepted the message"]
        return (OK if code == OK else code), messages
    finally:
        txn.close()
