"""The public plugin API (v1): everything a plugin may import, from one place.

Plugins write `from qpsmtpd_py.api import Plugin, DECLINED, DENY, ...`. Engine
modules behind these names may move; this surface stays. docs/plugin-api.md
describes each piece.
"""

from .constants import (  # noqa: F401  return codes, log levels and their helpers
    DECLINED, DENY, DENY_CODES, DENY_DISCONNECT, DENYHARD, DENYSOFT, DENYSOFT_DISCONNECT,
    DISCONNECT_CODES, DONE, OK, LOG_LEVELS, LOG_NAMES, LOGALERT, LOGCRIT, LOGDEBUG, LOGEMERG,
    LOGERROR, LOGINFO, LOGNOTICE, LOGRADAR, LOGWARN, is_deny, is_disconnect, is_soft,
    log_level, return_code, return_name,
)
from .address import Address, valid_address_literal  # noqa: F401
from .config import ConfigError, ConfigLine  # noqa: F401
from .plugin import Plugin, isa_plugin, parse_pairs  # noqa: F401
from .dns import DNSFailure, reverse_ip  # noqa: F401  self.resolver's failure and list-zone names
from .store import StoreError  # noqa: F401  self.store's "cannot be used" error
from .scanner import Scanner, ScannerError  # noqa: F401  the client for content scanners
