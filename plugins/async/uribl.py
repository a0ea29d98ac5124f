"""async/uribl - the name of uribl under qpsmtpd-async (qpsmtpd 0.94, removed in 0.95).
Our uribl already runs its lookups in parallel with the rest of the session, so a
config written for qpsmtpd-async loads as it is; see `qpsmtpd-doc uribl`."""

from qpsmtpd_py.api import isa_plugin


class AsyncUribl(isa_plugin("uribl")):
    pass
