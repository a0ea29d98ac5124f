"""t_raise - test plugin: raise an exception in the named hooks.

Arguments: HOOK [HOOK ...]. The exception text is `t_raise boom in <hook>`.
"""

from qpsmtpd_py.plugin import Plugin


class TRaise(Plugin):
    def register(self, *args):
        for hook in args:
            self.register_hook(hook, self._make(hook))

    @staticmethod
    def _make(hook):
        def boom(transaction, *args):
            raise RuntimeError(f"t_raise boom in {hook}")
        return boom
