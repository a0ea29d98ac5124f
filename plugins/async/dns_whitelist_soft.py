"""async/dns_whitelist_soft - the name of dns_whitelist_soft under qpsmtpd-async (qpsmtpd 0.94, removed in 0.95).
Our dns_whitelist_soft already runs its lookups in parallel with the rest of the session, so a
config written for qpsmtpd-async loads as it is; see `qpsmtpd-doc dns_whitelist_soft`."""

from qpsmtpd_py.api import isa_plugin


class AsyncDnsWhitelistSoft(isa_plugin("dns_whitelist_soft")):
    pass
