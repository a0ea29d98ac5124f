"""t_config - test plugin: a config hook that answers for one config name.

Arguments: NAME VALUE [VALUE ...]   (each VALUE is one line; `_` stands for a space)
"""

from qpsmtpd_py.constants import DECLINED, OK
from qpsmtpd_py.plugin import Plugin


class TConfig(Plugin):
    def register(self, name, *values):
        self.name = name
        self.values = [v.replace("_", " ") for v in values]

    def hook_config(self, transaction, name):
        if name == self.name:
            return (OK, *self.values)
        return DECLINED
