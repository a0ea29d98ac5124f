"""The stress flag: one byte of shared memory the master sets when the pool is
nearly full and clients are waiting (Postfix's overload mode). Every child reads
it while it waits for its client (limits.py): time-outs get shorter and error
limits lower at once, even for sessions already running."""

import mmap


class StressFlag:
    def __init__(self):
        self.mem = mmap.mmap(-1, 1)

    def set(self, on):
        self.mem[0] = 1 if on else 0

    def __call__(self):
        return self.mem[0] == 1
