"""check_badrcptto - the old name of the badrcptto plugin; see `badrcptto`."""

from qpsmtpd_py.api import isa_plugin


class CheckBadRcptTo(isa_plugin("badrcptto")):
    pass
