"""require_resolvable_fromhost - the old name (qpsmtpd 0.84, Debian's config) of
resolvable_fromhost: refuse envelope senders whose domain has no usable MX or
address. Same plugin, same arguments and replies; see `qpsmtpd-doc
resolvable_fromhost`."""

from qpsmtpd_py.api import isa_plugin


class RequireResolvableFromhost(isa_plugin("resolvable_fromhost")):
    pass
