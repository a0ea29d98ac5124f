"""async/require_resolvable_fromhost - the name of require_resolvable_fromhost under qpsmtpd-async (qpsmtpd 0.94, removed in 0.95).
Our require_resolvable_fromhost already runs its lookups in parallel with the rest of the session, so a
config written for qpsmtpd-async loads as it is; see `qpsmtpd-doc require_resolvable_fromhost`."""

from qpsmtpd_py.api import isa_plugin


class AsyncRequireResolvableFromhost(isa_plugin("require_resolvable_fromhost")):
    pass
