"""t_rcpt_note - test plugin: set a note on every recipient at RCPT (DECLINED).

Arguments:  KEY VALUE [KEY VALUE ...]   (VALUE may use {user} and {host})
"""

from qpsmtpd_py import constants as C
from qpsmtpd_py.plugin import Plugin


class TRcptNote(Plugin):
    def register(self, *args):
        self.values = dict(zip(args[0::2], args[1::2]))

    def hook_rcpt(self, transaction, rcpt, params=None):
        for key, value in self.values.items():
            rcpt.notes[key] = value.format(user=rcpt.user, host=rcpt.host)
        return C.DECLINED
