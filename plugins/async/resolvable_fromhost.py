"""async/resolvable_fromhost - the name of resolvable_fromhost under qpsmtpd-async (qpsmtpd 0.94, removed in 0.95).
Our resolvable_fromhost already runs its lookups in parallel with the rest of the session, so a
config written for qpsmtpd-async loads as it is; see `qpsmtpd-doc resolvable_fromhost`."""

from qpsmtpd_py.api import isa_plugin


class AsyncResolvableFromhost(isa_plugin("resolvable_fromhost")):
    pass
