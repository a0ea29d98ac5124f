"""check_badmailfromto - the old name of the badmailfromto plugin; see `badmailfromto`."""

from qpsmtpd_py.api import isa_plugin


class CheckBadMailFromTo(isa_plugin("badmailfromto")):
    pass
