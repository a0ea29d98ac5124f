"""t_keepnote - test plugin: at data_post, copy the named transaction notes into the
connection note `t_keepnote` ({name: value}), so a test can read what content plugins
left for later plugins after the session ended.

Arguments:  NAME [NAME ...]
"""

from qpsmtpd_py.api import DECLINED, Plugin


class TKeepNote(Plugin):
    def register(self, *names):
        self.names = names

    def hook_data_post(self, transaction):
        kept = self.connection.notes.setdefault("t_keepnote", {})
        for name in self.names:
            kept[name] = transaction.notes.get(name)
        return DECLINED
