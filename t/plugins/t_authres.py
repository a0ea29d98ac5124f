"""t_authres - test plugin: in the mail hook, store `x-test=pass` Authentication-Results
text, but only for senders whose local part is `x`."""

from qpsmtpd_py.constants import DECLINED
from qpsmtpd_py.plugin import Plugin


class TAuthRes(Plugin):
    def hook_mail(self, transaction, sender, params):
        if sender.user == "x":
            self.store_auth_results(f"x-test=pass smtp.mailfrom={sender.address}")
        return DECLINED
