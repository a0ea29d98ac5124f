"""t_badmethod - test plugin with a hook_ method for a hook qpsmtpd does not know."""

from qpsmtpd_py.plugin import Plugin


class TBadMethod(Plugin):
    def hook_rcpt_to(self, transaction, *args):
        return 909
