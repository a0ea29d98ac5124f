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
from .config import ConfigError, ConfigLine, beside  # noqa: F401  beside: config-relative paths
from .plugin import Plugin, isa_plugin, parse_pairs  # noqa: F401
from .helpers.dns import DNSFailure, DNSTimeout, reverse_ip  # noqa: F401  self.resolver's failures, list-zone names
from .helpers import dnslist  # noqa: F401  DNS list helpers: list answers, TXT reply text, lookups collected once
from .helpers.store import StoreError  # noqa: F401  self.store's "cannot be used" error
from .arguments import (  # noqa: F401  declared config/plugins arguments (Plugin.arguments)
    REJECT, REJECT_TYPE, AnyKeyword, Arg, ArgumentError, Bool, Checked, Choice, Domains, Flag,
    Host, Int, Keyword, LogLevel, Number, Path, Positional, Text,
)

# -- helper libraries for plugins (their engine modules may move; these names stay) --------
from .helpers.addrlist import (  # noqa: F401  address lists (badmailfrom syntax), local domains
    NO_MAILBOX, AddressList, address_list, compile_pattern, is_local_domain, user_candidates,
)
from .helpers.netmatch import (  # noqa: F401  IP lists
    IPList, cached_iplist, ip_candidates, ip_prefixes, parse_ip,
)
from .helpers.aliases import AliasTable, parse_sendmail_aliases  # noqa: F401  alias files
from .helpers.cdb import CDB  # noqa: F401  constant databases (tinycdb format)
from .helpers.filecache import FileCache, file_signature  # noqa: F401  parsed files, re-read on change
from .helpers.logsink import line_text, session_id  # noqa: F401  logging/* plugins
from .helpers.smtpclient import SMTPClient, SMTPError, stream_socket, xtext  # noqa: F401  queue/smtp-forward
from .helpers.passwords import validate_password  # noqa: F401  auth plugins
from .helpers.store import check_store, open_store, redis_store  # noqa: F401  the shared store (see also self.store)
from .helpers.store_redis import StoreUnavailable  # noqa: F401  a Redis store that cannot be reached now
from .helpers import greylist  # noqa: F401  greylisting's triplets (the plugin and qpsmtpd-store)
from .helpers import karma as karma_records  # noqa: F401  karma's per-IP records (the plugin and karma_tool)
from .helpers import tokenbucket  # noqa: F401  token buckets in the store (berkeley_* plugins and tool)
from .arguments import parse_arguments  # noqa: F401  a settings file in a plugin's argument syntax
from .helpers.scanner import Scanner, ScannerError  # noqa: F401  the client for content scanners
from .helpers.scanprog import (  # noqa: F401  scanner programs, temp message files, failure policy
    ProgramError, ProgramResult, ScanProgram, message_file, scan_arguments, scan_failed,
    virus_found,
)
from .helpers.mime import content_type, fold as fold_header, is_multipart, walk as mime_parts  # noqa: F401
from .helpers.milter import MilterError, MilterSession  # noqa: F401  the MTA side of the milter protocol
from .helpers.outbound import queue_new_message  # noqa: F401  mail a plugin sends through the queue plugins
from .tls import TLSFailed, default_ssl_dir  # noqa: F401  the tls plugin (Plugin.start_tls)
from .tls import DEFAULT_FILES as DEFAULT_TLS_FILES, build_context as build_tls_context  # noqa: F401
from .helpers.auth_plugin import AuthPlugin, AuthUnavailable  # noqa: F401  password-checking auth plugins
from .helpers.remote_login import RemoteLoginPlugin, login_arguments  # noqa: F401  auth by remote login
from .helpers.extras import require as require_extra  # noqa: F401  a plugin's optional library (pyproject.toml extra)
from .helpers.durable import fsync_dir, unlink_quietly  # noqa: F401  crash-safe queue files
from .helpers.mailauth import (  # noqa: F401  SPF, DKIM, DomainKeys, DMARC plugins
    SigningKey, SigningKeyError, aligned, key_to_sign_with, message_bytes, organizational_domain,
    printable, set_auth_result, signing_key,
)
from .helpers import domainkeys  # noqa: F401  DomainKeys (RFC 4870): domainkeys and domainkeys_sign
from .helpers import geoip  # noqa: F401  MaxMind databases: ident/geoip, geo_blacklist_whitelist
