"""check_content_types - the name in check_content_type's own manual; see
`check_content_type` (the same plugin and config file, content_types)."""

from qpsmtpd_py.api import isa_plugin


class CheckContentTypes(isa_plugin("check_content_type")):
    pass
