"""t_lateimport - test plugin whose module imports a standard-library module that
nothing else in the server imports (mailbox), as a third-party plugin may: with
--user that import must still work (the module is imported before the switch)."""

import mailbox  # noqa: F401

from qpsmtpd_py.api import DECLINED, Plugin


class TLateImport(Plugin):
    def hook_connect(self, transaction):
        return DECLINED
