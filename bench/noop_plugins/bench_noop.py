"""bench_noop - the hooks karma registers, each declining at once (bench diagnostic)."""
from qpsmtpd_py.api import DECLINED, Plugin


class BenchNoop(Plugin):
    def hook_pre_connection(self, transaction, args):
        return DECLINED

    def hook_connect(self, transaction):
        return DECLINED

    def hook_mail(self, transaction, sender, params=None):
        return DECLINED

    def hook_rcpt(self, transaction, rcpt, params=None):
        return DECLINED

    def hook_data(self, transaction):
        return DECLINED

    hook_data_post = hook_data

    def hook_disconnect(self, transaction):
        return DECLINED
