"""t_note - test plugin: set a connection note at connect.

Arguments:  KEY VALUE [KEY VALUE ...]   (values that look like numbers become numbers)
"""

from qpsmtpd_py import constants as C
from qpsmtpd_py.plugin import Plugin


class TNote(Plugin):
    def register(self, *args):
        self.values = {}
        for key, value in zip(args[0::2], args[1::2]):
            try:
                value = float(value) if "." in value else int(value)
            except ValueError:
                pass
            self.values[key] = value

    def hook_connect(self, transaction):
        self.connection.notes.update(self.values)
        return C.DECLINED
