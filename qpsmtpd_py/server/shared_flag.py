"""A flag in one byte of shared memory: the master sets it, every child reads it
without a system call. Three of them in prefork:

* stress: the pool is nearly full and clients are waiting (Postfix's overload mode).
  Children read it while they wait for their client (limits.py): time-outs get shorter
  and error limits lower at once, even for sessions already running.
* clients waiting in the front for a child: a child that goes idle then wakes the
  master, which hands it one at once instead of at its next timer.
* holding (--grow-wait): the master holds the pool back and looks again on its own
  timer, so a child that takes a client need not wake it."""

import mmap


class SharedFlag:
    def __init__(self):
        self.mem = mmap.mmap(-1, 1)

    def set(self, on):
        self.mem[0] = 1 if on else 0

    def __call__(self):
        return self.mem[0] == 1
