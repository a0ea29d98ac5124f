"""denysoft_greylist - qpsmtpd's older name of the greylisting plugin (its manual's
NAME, and the name of its config file config/denysoft_greylist); see `greylisting`.
Same arguments, same store table: switching names keeps every triplet.
"""

from qpsmtpd_py.api import isa_plugin


class DenysoftGreylist(isa_plugin("greylisting")):
    pass
