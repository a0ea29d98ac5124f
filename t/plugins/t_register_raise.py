"""t_register_raise - test plugin whose register() rejects its arguments."""

from qpsmtpd_py.plugin import Plugin


class TRegisterRaise(Plugin):
    def register(self, *args):
        raise ValueError("t_register_raise refuses argument " + " ".join(args))
