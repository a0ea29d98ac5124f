"""whitelist_soft - Gavin Carr's name for the whitelist plugin (qpsmtpd renamed it to
`whitelist`); the same code, files and arguments: see `whitelist`."""

from qpsmtpd_py.api import isa_plugin


class WhitelistSoft(isa_plugin("whitelist")):
    pass
