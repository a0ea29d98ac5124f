"""aliases - aliases_check and aliases_rewrite in one plugin: refuse recipients
that are not in config/aliases at RCPT, and deliver to their expansion after
DATA. See `aliases_check` for the file format, the replies and the notes, and
`aliases_rewrite` for the rewrite.

Hooks: rcpt, data_post. Load it before rcpt_ok.
Example config/plugins line:  aliases
"""

from qpsmtpd_py.api import isa_plugin


class Aliases(isa_plugin("aliases_check"), isa_plugin("aliases_rewrite")):
    pass
