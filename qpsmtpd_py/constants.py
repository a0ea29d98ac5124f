"""Hook return codes and log levels, with qpsmtpd's names and numbers."""

OK = 900
DENY = 901
DENYSOFT = 902
DENY_DISCONNECT = 903
DENYHARD = DENY_DISCONNECT
DENYSOFT_DISCONNECT = 904
DECLINED = 909
DONE = 910

RETURN_CODES = {
    "OK": OK,
    "DENY": DENY,
    "DENYSOFT": DENYSOFT,
    "DENY_DISCONNECT": DENY_DISCONNECT,
    "DENYHARD": DENYHARD,
    "DENYSOFT_DISCONNECT": DENYSOFT_DISCONNECT,
    "DECLINED": DECLINED,
    "DONE": DONE,
}
RETURN_NAMES = {v: k for k, v in RETURN_CODES.items() if k != "DENYHARD"}

LOGEMERG, LOGALERT, LOGCRIT, LOGERROR, LOGWARN, LOGNOTICE, LOGINFO, LOGDEBUG = range(8)
LOGRADAR = 0
LOG_LEVELS = {
    "LOGEMERG": LOGEMERG, "LOGRADAR": LOGRADAR, "LOGALERT": LOGALERT, "LOGCRIT": LOGCRIT,
    "LOGERROR": LOGERROR, "LOGWARN": LOGWARN, "LOGNOTICE": LOGNOTICE, "LOGINFO": LOGINFO,
    "LOGDEBUG": LOGDEBUG,
}
LOG_NAMES = {v: k for k, v in LOG_LEVELS.items() if k != "LOGRADAR"}

DENY_CODES = (DENY, DENYSOFT, DENY_DISCONNECT, DENYSOFT_DISCONNECT)
DISCONNECT_CODES = (DENY_DISCONNECT, DENYSOFT_DISCONNECT)


def return_code(name_or_number):
    """'DENY', 'deny' or '901' -> 901; unknown -> None."""
    text = str(name_or_number).strip()
    if text.isdigit():
        number = int(text)
        return number if number in RETURN_NAMES or number == DENYHARD else None
    return RETURN_CODES.get(text.upper())


def return_name(code):
    return RETURN_NAMES.get(code, str(code))


def log_level(name_or_number):
    """'LOGINFO', 'info', '6' -> 6; unknown -> None."""
    text = str(name_or_number).strip()
    if text.lstrip("-").isdigit():
        return max(0, min(7, int(text)))
    text = text.upper()
    if not text.startswith("LOG"):
        text = "LOG" + text
    return LOG_LEVELS.get(text)


def is_deny(code):
    return code in DENY_CODES


def is_soft(code):
    return code in (DENYSOFT, DENYSOFT_DISCONNECT)


def is_disconnect(code):
    return code in DISCONNECT_CODES
