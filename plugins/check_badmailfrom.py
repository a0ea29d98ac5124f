"""check_badmailfrom - the old name of the badmailfrom plugin; see `badmailfrom`."""

from qpsmtpd_py.api import isa_plugin


class CheckBadMailFrom(isa_plugin("badmailfrom")):
    pass
