"""t_rcpt_notes - test plugin: in data_post, add one `X-Rcpt-Notes: <address> key=value ...`
header per recipient showing its address notes (sorted), so tests can see them."""

from qpsmtpd_py.constants import DECLINED
from qpsmtpd_py.plugin import Plugin


class TRcptNotes(Plugin):
    def hook_data_post(self, transaction):
        for rcpt in transaction.recipients:
            notes = " ".join(f"{k}={_show(v)}" for k, v in sorted(rcpt.notes.items()))
            transaction.header.add("X-Rcpt-Notes", f"{rcpt.address} {notes}".rstrip())
        return DECLINED


def _show(value):
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{v}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, list):
        return "[" + ",".join(map(str, value)) + "]"
    return str(value)
