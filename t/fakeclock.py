"""A clock for tests (the qpsmtpd_py.clock interface) that moves only when told to.

    clock = FakeClock()
    store = Store(path, clock=clock)      # or app.clock = clock
    clock.advance(61)                     # a minute passes, instantly
    clock.sleeps                          # every sleep() the code asked for
"""


class FakeClock:
    def __init__(self, start=1_700_000_000.0):
        self.now = float(start)         # time(): seconds since the epoch
        self.mono = 1000.0              # monotonic()
        self.sleeps = []                # every sleep(seconds), in order

    def time(self):
        return self.now

    def monotonic(self):
        return self.mono

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.advance(seconds)

    def advance(self, seconds):
        self.now += seconds
        self.mono += seconds
