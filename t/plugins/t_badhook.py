"""t_badhook - test plugin that registers a hook name qpsmtpd does not know."""

from qpsmtpd_py.plugin import Plugin


class TBadHook(Plugin):
    def register(self, *args):
        self.register_hook(args[0] if args else "no_such_hook", self.nothing)

    def nothing(self, transaction, *args):
        return 909
