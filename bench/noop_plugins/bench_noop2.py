"""bench_noop2 - greylisting's and berkeley_ipblacklist's hooks, declining (bench diagnostic)."""
from qpsmtpd_py.api import DECLINED, Plugin


class BenchNoop2(Plugin):
    def hook_connect(self, transaction):
        return DECLINED

    def hook_rcpt(self, transaction, rcpt, params=None):
        return DECLINED

    def hook_data(self, transaction):
        return DECLINED
