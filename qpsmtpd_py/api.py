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
from .arguments import (  # noqa: F401  declared config/plugins arguments (Plugin.arguments)
    REJECT, REJECT_TYPE, AnyKeyword, Arg, ArgumentError, Bool, Checked, Choice, Domains, Flag,
    Host, Int, Keyword, LogLevel, Number, Path, Positional, Text, parse_arguments,
)

# -- helper libraries for plugins (their engine modules may move; these names stay) --------
# Imported on first use (module __getattr__, PEP 562): a server whose plugins need no
# DNS, DKIM or scanner maps none of dnspython, cryptography, email ... (issue 15: the
# master's image, which every child shares, is smaller). A plugin's own
# `from qpsmtpd_py.api import X` runs when it is loaded, in the master, before any fork.
_LAZY = {
    # name: (module under qpsmtpd_py, attribute; None = the module itself)
    "DNSFailure": ("helpers.dns", "DNSFailure"),      # self.resolver's failures
    "DNSTimeout": ("helpers.dns", "DNSTimeout"),
    "reverse_ip": ("helpers.dns", "reverse_ip"),      # list-zone names
    "dnslist": ("helpers.dnslist", None),              # DNS list answers, TXT reply text
    "StoreError": ("helpers.store", "StoreError"),    # self.store's "cannot be used" error
    "check_store": ("helpers.store", "check_store"),  # the shared store (see also self.store)
    "open_store": ("helpers.store", "open_store"),
    "redis_store": ("helpers.store", "redis_store"),
    "StoreUnavailable": ("helpers.store_redis", "StoreUnavailable"),
    "NO_MAILBOX": ("helpers.addrlist", "NO_MAILBOX"),  # address lists (badmailfrom syntax)
    "AddressList": ("helpers.addrlist", "AddressList"),
    "address_list": ("helpers.addrlist", "address_list"),
    "compile_pattern": ("helpers.addrlist", "compile_pattern"),
    "is_local_domain": ("helpers.addrlist", "is_local_domain"),
    "user_candidates": ("helpers.addrlist", "user_candidates"),
    "IPList": ("helpers.netmatch", "IPList"),          # IP lists
    "cached_iplist": ("helpers.netmatch", "cached_iplist"),
    "ip_candidates": ("helpers.netmatch", "ip_candidates"),
    "ip_prefixes": ("helpers.netmatch", "ip_prefixes"),
    "parse_ip": ("helpers.netmatch", "parse_ip"),
    "AliasTable": ("helpers.aliases", "AliasTable"),  # alias files
    "parse_sendmail_aliases": ("helpers.aliases", "parse_sendmail_aliases"),
    "CDB": ("helpers.cdb", "CDB"),                     # constant databases (tinycdb format)
    "FileCache": ("helpers.filecache", "FileCache"),  # parsed files, re-read on change
    "file_signature": ("helpers.filecache", "file_signature"),
    "line_text": ("helpers.logsink", "line_text"),    # logging/* plugins
    "session_id": ("helpers.logsink", "session_id"),
    "SMTPClient": ("helpers.smtpclient", "SMTPClient"),  # queue/smtp-forward
    "SMTPError": ("helpers.smtpclient", "SMTPError"),
    "stream_socket": ("helpers.smtpclient", "stream_socket"),
    "xtext": ("helpers.smtpclient", "xtext"),
    "validate_password": ("helpers.passwords", "validate_password"),  # auth plugins
    "greylist": ("helpers.greylist", None),            # greylisting's triplets
    "karma_records": ("helpers.karma", None),          # karma's per-IP records
    "tokenbucket": ("helpers.tokenbucket", None),      # token buckets in the store
    "Scanner": ("helpers.scanner", "Scanner"),        # the client for content scanners
    "ScannerError": ("helpers.scanner", "ScannerError"),
    "ProgramError": ("helpers.scanprog", "ProgramError"),  # scanner programs, temp files
    "ProgramResult": ("helpers.scanprog", "ProgramResult"),
    "ScanProgram": ("helpers.scanprog", "ScanProgram"),
    "message_file": ("helpers.scanprog", "message_file"),
    "scan_arguments": ("helpers.scanprog", "scan_arguments"),
    "scan_failed": ("helpers.scanprog", "scan_failed"),
    "virus_found": ("helpers.scanprog", "virus_found"),
    "content_type": ("helpers.mime", "content_type"),
    "fold_header": ("helpers.mime", "fold"),
    "is_multipart": ("helpers.mime", "is_multipart"),
    "mime_parts": ("helpers.mime", "walk"),
    "MilterError": ("helpers.milter", "MilterError"),  # the MTA side of the milter protocol
    "MilterSession": ("helpers.milter", "MilterSession"),
    "queue_new_message": ("helpers.outbound", "queue_new_message"),  # mail a plugin sends
    "TLSFailed": ("tls", "TLSFailed"),                 # the tls plugin (Plugin.start_tls)
    "default_ssl_dir": ("tls", "default_ssl_dir"),
    "DEFAULT_TLS_FILES": ("tls", "DEFAULT_FILES"),
    "build_tls_context": ("tls", "build_context"),
    "AuthPlugin": ("helpers.auth_plugin", "AuthPlugin"),  # password-checking auth plugins
    "AuthUnavailable": ("helpers.auth_plugin", "AuthUnavailable"),
    "RemoteLoginPlugin": ("helpers.remote_login", "RemoteLoginPlugin"),  # auth by remote login
    "login_arguments": ("helpers.remote_login", "login_arguments"),
    "require_extra": ("helpers.extras", "require"),   # a plugin's optional library (pyproject.toml extra)
    "fsync_dir": ("helpers.durable", "fsync_dir"),    # crash-safe queue files
    "unlink_quietly": ("helpers.durable", "unlink_quietly"),
    "SigningKey": ("helpers.mailauth", "SigningKey"),  # SPF, DKIM, DomainKeys, DMARC plugins
    "SigningKeyError": ("helpers.mailauth", "SigningKeyError"),
    "aligned": ("helpers.mailauth", "aligned"),
    "dkim_speed_up": ("helpers.dkimspeed", "speed_up"),  # dkimpy without its slow paths
    "key_to_sign_with": ("helpers.mailauth", "key_to_sign_with"),
    "message_bytes": ("helpers.mailauth", "message_bytes"),
    "organizational_domain": ("helpers.mailauth", "organizational_domain"),
    "printable": ("helpers.mailauth", "printable"),
    "set_auth_result": ("helpers.mailauth", "set_auth_result"),
    "signing_key": ("helpers.mailauth", "signing_key"),
    "domainkeys": ("helpers.domainkeys", None),        # DomainKeys (RFC 4870)
    "geoip": ("helpers.geoip", None),                  # MaxMind databases
}


def __getattr__(name):
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    import importlib
    value = importlib.import_module("." + module, "qpsmtpd_py")
    if attr is not None:
        value = getattr(value, attr)
    globals()[name] = value          # looked up once
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
