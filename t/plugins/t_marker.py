"""t_marker - test plugin: append the name of each hook it sees to a file.

Arguments: FILE HOOK [HOOK ...]   (e.g. `t_marker /tmp/x/marks disconnect post-connection`)
"""

from qpsmtpd_py.plugin import Plugin


class TMarker(Plugin):
    def register(self, *args):
        self.path = args[0]
        for hook in args[1:]:
            self.register_hook(hook, self._make(hook))

    def _make(self, hook):
        def mark(transaction, *args):
            with open(self.path, "a") as fh:
                fh.write(hook + "\n")
            return 909   # DECLINED
        return mark
