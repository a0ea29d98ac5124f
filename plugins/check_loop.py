"""check_loop - the old (0.84 and Debian) name of the loop plugin; see `loop`.

Debian's config/plugins loads it as `check_loop` (optionally `check_loop N`). Unlike
Debian's qpsmtpd 0.94 wrapper, which loses the max_hops limit and so refuses every
message with `552 Too many hops (#5.4.6)`, this is the loop plugin itself: the
argument is honoured and only messages with too many Received/Delivered-To fields
are refused.
"""

from qpsmtpd_py.api import isa_plugin


class CheckLoop(isa_plugin("loop")):
    pass
