"""Session limits against clients that hold a worker without sending mail, and
the stress mode that tightens them when the pool is nearly full (Postfix's
smtpd_timeout, smtpd_junk_command_limit, smtpd_hard_error_limit, smtpd_min_data_rate
and their overload values).

Each limit is a config file in the config directory:

    timeout / timeoutsmtpd  a command line must arrive whole within this many seconds
                            of the server starting to wait for it (bytes trickling in
                            do not stretch it); during DATA, each read            1200
    min_data_rate           bytes/s a DATA upload must average once it has run
                            DATA_GRACE seconds (stress: stress_timeout)            500
    junk_command_limit      NOOP, RSET, VRFY, EXPN, HELP past this many count as
                            errors                                        100 (stress 1)
    hard_error_limit        errors (unknown commands, junk past its limit) past
                            this many end the session: 421 4.7.0          20 (stress 1)
    max_session_time        seconds a session may last; checked while waiting for a
                            command (a DATA upload in progress is never cut)
                                                                        3600 (stress 300)
    stress_timeout          the command time-out in stress mode              10
    front_max_per_ip        connections one client IP may have waiting in the
                            prefork front (a file descriptor each); past it a new
                            one gets 421 4.7.0 and is closed; 0 = no cap.
                            127.0.0.1 and ::1 are exempt (Postfix's
                            postscreen_client_connection_count_limit)       50

AUTH brute force (Postfix's error sleep and anvil, Haraka's auth limits; auth.py):

    auth_max_failures       failed AUTH commands in one session; the last gets
                            421 4.7.0 and the session ends; 0 = no limit          3
    auth_failure_delay      seconds the reply to a refused password waits, from the
                            second one in a session on, doubling each time         1
    auth_failure_delay_max  the longest such wait                                  4
    auth_max_failures_ip    refused passwords one client IP may have in the shared
                            store (helpers/store.py, table auth_failures) before its
                            AUTH is answered 421 4.7.0 without a try; 0 = off       10
    auth_failure_window     seconds an IP's count lives, from its first failure   900

Stress mode is on while the server says so (app.stress: prefork and forkserver
set it from their scoreboard when the pool is nearly full; single sessions never
are). In stress a command line must also be complete within STRESS_LINE_TIME
seconds of its first byte: real clients send a command in one write, a dripper
does not. The junk and error counts start again after each delivered message.
"""

from .config import ConfigError

DATA_GRACE = 30.0            # seconds of DATA before min_data_rate is looked at
STRESS_LINE_TIME = 3.0       # in stress: first byte of a command to its line end
JUNK_VERBS = frozenset(("noop", "rset", "vrfy", "expn", "help"))

_SETTINGS = {                # name: (default, value in stress mode or None)
    "min_data_rate": (500, None),
    "junk_command_limit": (100, 1),
    "hard_error_limit": (20, 1),
    "max_session_time": (3600, 300),
    "stress_timeout": (10, None),
    "front_max_per_ip": (50, None),
    "auth_max_failures": (3, None),
    "auth_failure_delay": (1, None),
    "auth_failure_delay_max": (4, None),
    "auth_max_failures_ip": (10, None),
    "auth_failure_window": (900, None),
}


class Policy:
    """The limits of one loaded configuration (built once per app)."""

    def __init__(self, app):
        config = app.config
        self.app = app
        self.timeout = app.timeout
        values = {}
        for name, (default, _) in _SETTINGS.items():
            value = config.get_int(name, default)
            if value < 0:
                raise ConfigError(f"{name}: must not be negative ({value})")
            values[name] = value
        self.min_data_rate = values["min_data_rate"]
        self.junk = (values["junk_command_limit"], _SETTINGS["junk_command_limit"][1])
        self.errors = (values["hard_error_limit"], _SETTINGS["hard_error_limit"][1])
        self.session_time = (values["max_session_time"], _SETTINGS["max_session_time"][1])
        self.stress_timeout = values["stress_timeout"] or self.timeout
        self.front_max_per_ip = values["front_max_per_ip"]
        self.auth_max_failures = values["auth_max_failures"]
        self.auth_failure_delay = values["auth_failure_delay"]
        self.auth_failure_delay_max = values["auth_failure_delay_max"]
        self.auth_max_failures_ip = values["auth_max_failures_ip"]
        self.auth_failure_window = values["auth_failure_window"] or 1

    def stressed(self):
        stress = getattr(self.app, "stress", None)
        return bool(stress is not None and stress())

    @property
    def sliced(self):
        """Whether stress can start in the middle of a wait (then reads wake now and
        then to look): only where a server mode gives a stress signal."""
        return getattr(self.app, "stress", None) is not None

    # -- what the channel asks ---------------------------------------------------------
    def wait(self, stressed=None):
        """Seconds to wait for a command line (or for each DATA read)."""
        stressed = self.stressed() if stressed is None else stressed
        return min(self.timeout, self.stress_timeout) if stressed else self.timeout

    def line_time(self, stressed):
        return STRESS_LINE_TIME if stressed else None

    def data_grace(self, stressed):
        return self.wait(True) if stressed else DATA_GRACE

    # -- what the session asks ---------------------------------------------------------
    def pick(self, pair, stressed):
        normal, stress = pair
        if stressed and stress is not None:
            return min(normal, stress) if normal else stress
        return normal

    def junk_limit(self, stressed):
        return self.pick(self.junk, stressed)

    def error_limit(self, stressed):
        return self.pick(self.errors, stressed)

    def max_session_time(self, stressed):
        return self.pick(self.session_time, stressed)

    def auth_delay(self, failures):
        """Seconds to wait before answering the `failures`-th refused password: none
        for the first (a typo), then auth_failure_delay doubling, at most _max."""
        if failures < 2 or not self.auth_failure_delay:
            return 0
        return min(self.auth_failure_delay * 2 ** min(failures - 2, 30),
                   self.auth_failure_delay_max)


def policy(app):
    """The app's Policy, made on first use (a reload makes a new app, so a new one)."""
    found = app.__dict__.get("_session_policy")
    if found is None:
        found = app.__dict__["_session_policy"] = Policy(app)
    return found
