"""t_txnnote - test plugin: at data_post, set a transaction note to a dict (what an
earlier content plugin would have left, e.g. the spamassassin note).

Arguments:  KEY NAME=VALUE [NAME=VALUE ...]     (t_txnnote spamassassin is_spam=Yes score=9)
"""

from qpsmtpd_py.api import DECLINED, Plugin


class TTxnNote(Plugin):
    def register(self, key, *pairs):
        self.key = key
        self.value = dict(pair.split("=", 1) for pair in pairs)

    def hook_data_post(self, transaction):
        transaction.notes[self.key] = dict(self.value)
        return DECLINED
