"""check_bogus_bounce - qpsmtpd's registry alias of the bogus_bounce plugin; see
`bogus_bounce`. Every argument works the same (`check_bogus_bounce deny`).
"""

from qpsmtpd_py.api import isa_plugin


class CheckBogusBounce(isa_plugin("bogus_bounce")):
    pass
