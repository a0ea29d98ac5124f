"""t_user_config - test plugin: per-recipient config files for the user_config hook.

Argument: DIR. For recipient user@host and config name NAME it answers the lines
of DIR/user@host/NAME (OK, lines...), or declines when there is no such file.
"""

import os

from qpsmtpd_py import constants as C
from qpsmtpd_py.plugin import Plugin


class TUserConfig(Plugin):
    def register(self, *args):
        self.dir = args[0]

    def hook_user_config(self, transaction, address, name):
        path = os.path.join(self.dir, address.address.lower(), name)
        if not os.path.isfile(path):
            return C.DECLINED
        with open(path) as fh:
            lines = [l.strip() for l in fh if l.strip() and not l.startswith("#")]
        return (C.OK, *lines)
