"""random_error - fail sessions at random, to test how clients and queues cope.

Chaos testing only: with percent P about P% of the messages that would
otherwise be accepted fail somewhere along the way, with

  DENYSOFT             450/451/452 random failure     (3 of 5 failures)
  DENYSOFT_DISCONNECT  421 random failure, then close  (2 of 5 failures)

Every failure is temporary, so well-behaved senders retry and nothing is lost.
The chance is spread evenly over the six checkpoints a message passes
(connect, HELO/EHLO, MAIL, RCPT, DATA, end of data): each fails with
1 - (1 - P/100) ** (1/6), so `random_error 100` fails every connection at
connect and `random_error 0` (or a negative number) never fails.
(qpsmtpd read 0 as "use the default 1".)

Arguments:  [percent]   default 1
Notes: the connection note `random_fail_%` holds the percentage for the session;
other plugins may change it (set at connect).
Hooks: connect, helo, ehlo, mail, rcpt, data, data_post.
Example config/plugins line:  random_error 5
"""

import random

from qpsmtpd_py.api import (
    DECLINED, DENYSOFT, DENYSOFT_DISCONNECT, LOGINFO, Number, Plugin, Positional,
)


class RandomError(Plugin):
    arguments = (
        Positional("percent", Number(), 1.0, "chance in percent that a message fails "
                   "(0 or less: never)"),
    )

    def register(self, *args):
        self.percent = self.args["percent"]

    def hook_connect(self, transaction):
        self.connection.notes["random_fail_%"] = self.percent
        return self.random_fail()

    def random_fail(self, *args):
        percent = float(self.connection.notes.get("random_fail_%", self.percent))
        if percent <= 0:
            return DECLINED
        success = max(0.0, 1 - percent / 100) ** (1 / 6)
        if random.random() < success:
            return DECLINED
        self.log(LOGINFO, f"fail, random failure ({percent:g}%)")
        if random.random() < 0.4:
            return DENYSOFT_DISCONNECT, "random failure"
        return DENYSOFT, "random failure"

    hook_helo = hook_ehlo = hook_mail = hook_rcpt = hook_data = hook_data_post = random_fail
