"""t_p0f - test plugin: set the connection note p0f (a dict, as ident/p0f does) at connect.

Arguments: KEY VALUE pairs (genre Windows link DSL distance 12 ...).
"""

from qpsmtpd_py.api import DECLINED, Plugin


class TP0f(Plugin):
    def register(self, *args):
        self.fingerprint = dict(zip(args[0::2], args[1::2]))

    def hook_connect(self, transaction):
        self.connection.notes["p0f"] = dict(self.fingerprint)
        return DECLINED
