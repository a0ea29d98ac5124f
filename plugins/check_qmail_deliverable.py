"""check_qmail_deliverable - the old name of the qmail_deliverable plugin; see
`qmail_deliverable`."""

from qpsmtpd_py.api import isa_plugin


class CheckQmailDeliverable(isa_plugin("qmail_deliverable")):
    pass
