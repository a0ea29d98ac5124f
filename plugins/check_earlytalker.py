"""check_earlytalker - the old (0.84 and Debian) name of the earlytalker plugin; see
`earlytalker`. Debian's default config loads it as `check_earlytalker action log`."""

from qpsmtpd_py.api import isa_plugin


class CheckEarlytalker(isa_plugin("earlytalker")):
    pass
