"""check_basicheaders - the old (0.84) name of the headers plugin; see `headers`.

`check_basicheaders` and `check_basicheaders DAYS` (a Date more than DAYS days in
the past or the future is refused) keep working, with the headers plugin's
checks and replies; its keyword arguments (require, past, future, reject,
reject_type) work here too.
"""

from qpsmtpd_py.api import isa_plugin


class CheckBasicHeaders(isa_plugin("headers")):
    pass
