"""The engine's clock: wall time, monotonic time and sleep behind one object.

Why: code that waits or expires things (the tarpit's delays, the store's TTLs,
session durations) reads time through a clock so a test can hand it a fake one
and advance time instead of sleeping. Production always uses SYSTEM_CLOCK, which
is the time module itself.
"""

import time as _time


class SystemClock:
    """time.time, time.monotonic and time.sleep; the default everywhere."""

    time = staticmethod(_time.time)
    monotonic = staticmethod(_time.monotonic)
    sleep = staticmethod(_time.sleep)


SYSTEM_CLOCK = SystemClock()
