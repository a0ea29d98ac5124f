"""check_relay - the old (Debian) name of the relay plugin; see `relay`."""

from qpsmtpd_py.api import isa_plugin


class CheckRelay(isa_plugin("relay")):
    pass
