"""async/dnsbl - the name of dnsbl under qpsmtpd-async (qpsmtpd 0.94, removed in 0.95).
Our dnsbl already runs its lookups in parallel with the rest of the session, so a
config written for qpsmtpd-async loads as it is; see `qpsmtpd-doc dnsbl`."""

from qpsmtpd_py.api import isa_plugin


class AsyncDnsbl(isa_plugin("dnsbl")):
    pass
