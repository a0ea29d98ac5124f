"""async/rhsbl - the name of rhsbl under qpsmtpd-async (qpsmtpd 0.94, removed in 0.95).
Our rhsbl already runs its lookups in parallel with the rest of the session, so a
config written for qpsmtpd-async loads as it is; see `qpsmtpd-doc rhsbl`."""

from qpsmtpd_py.api import isa_plugin


class AsyncRhsbl(isa_plugin("rhsbl")):
    pass
