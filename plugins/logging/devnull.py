"""logging/devnull - discard every log line.

With this as the only logging plugin nothing is logged at all (not even to
standard error, where lines go when no logging plugin is loaded). Useful for
benchmarks and for setups that log elsewhere (another logging plugin still gets
every line: this one answers DECLINED).

Arguments: none.  Hooks: logging.
Example config/logging line:  logging/devnull
"""

from qpsmtpd_py.api import DECLINED, Plugin


class Devnull(Plugin):
    arguments = ()                # none but loglevel: anything else stops start-up

    def hook_logging(self, transaction, level, hook, plugin, msg):
        return DECLINED
