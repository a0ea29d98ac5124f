"""t_client_options - test plugin: at connect, set the connection note client_options
as Holzer's client_options plugin does: {PLUGIN: {'skip': 1}} for each argument."""

from qpsmtpd_py.api import DECLINED, Plugin


class TClientOptions(Plugin):
    def register(self, *names):
        self.names = names

    def hook_connect(self, transaction):
        self.connection.notes["client_options"] = {name: {"skip": 1} for name in self.names}
        return DECLINED
