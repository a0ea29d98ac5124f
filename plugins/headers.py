"""headers - basic header checks (RFC 5322): required fields, fields that may appear
only once, a Date too far in the past or the future, and empty messages.

At data_post, in this order:
  * an empty message (no body and no header fields but trace fields) is refused:
      `You must send some data first`
  * each field named in `require` must be present:
      `We require a valid From header`
  * each of Date, From, Sender, Reply-To, To, Cc, Bcc, Message-Id, In-Reply-To,
    References, Subject may appear only once:
      `Only one Subject header allowed. See RFC 5322, Section 3.6`
  * with past/future set, a Date that parses and lies further away is refused:
      `The Date header is too far in the past` / `... in the future`
    (an unparseable Date is only logged)
Every problem is logged and costs 1 karma; the reply names the first one (the Date
problem when there is one, as in qpsmtpd). Relay clients and whitelisted
hosts/senders are not checked (except for the empty message).

Arguments:
  require F1,F2,...    required fields, comma-separated; default From (add Date to be
                       RFC 5322 strict)
  past DAYS            refuse a Date more than DAYS days old
  future DAYS          refuse a Date more than DAYS days ahead
  DAYS                 (check_basicheaders' old form) sets both past and future
  reject 0|1|naughty   default 1 (0: log only)
  reject_type perm|temp|disconnect|temp_disconnect   default perm (552)

Also loadable as `check_basicheaders` (its old name; `check_basicheaders 5`).
Hooks: data_post.
Example:
  headers require From,Date past 30 future 2

Differences from qpsmtpd: qpsmtpd's reply for missing and repeated fields was its
reject type's name (a bug: `get_reject` got its arguments swapped); here it is the
text qpsmtpd meant, as listed above. qpsmtpd never refused an empty message as
such because our Received line makes no message empty: an empty message is one
without a body and without header fields of its own.
"""

import email.utils

from qpsmtpd_py.api import (
    DECLINED, LOGINFO, REJECT, REJECT_TYPE, Number, Keyword, Plugin, Positional, Text,
)

SINGULAR = ("Date", "From", "Sender", "Reply-To", "To", "Cc", "Bcc", "Message-Id",
            "In-Reply-To", "References", "Subject")
TRACE = {"received", "return-path", "delivered-to", "authentication-results"}
DAY = 24 * 3600


class Headers(Plugin):
    arguments = (
        Positional("days", Number(min=0), None, "old check_basicheaders form: past and future"),
        Keyword("require", Text(r"[\w-]+(,[\w-]+)*", "field names separated by commas"), "From",
                "the fields a message must have"),
        Keyword("past", Number(min=0), None, "refuse a Date more than this many days old"),
        Keyword("future", Number(min=0), None, "refuse a Date more than this many days ahead"),
        REJECT,
        REJECT_TYPE.but(default="perm"),
    )

    def register(self, *args):
        self.required = [f for f in self.args["require"].split(",") if f]
        days = self.args["days"]
        self.past = self.args["past"] if self.args["past"] is not None else days
        self.future = self.args["future"] if self.args["future"] is not None else days

    def hook_data_post(self, transaction):
        header = transaction.header
        if header is None:
            return self.get_reject("Headers are missing", "missing headers")
        if transaction.body_length == 0 and all(n.lower() in TRACE for n, _ in header):
            return self.get_reject("You must send some data first", "no data")
        if self.is_immune():
            return DECLINED
        problems = []
        for name in self.required:
            if not header.get(name):
                self.log(LOGINFO, f"fail, no {name} header")
                problems.append(f"We require a valid {name} header")
        for name in SINGULAR:
            if header.count(name) > 1:
                self.log(LOGINFO, f"fail, too many {name} headers")
                problems.append(f"Only one {name} header allowed. See RFC 5322, Section 3.6")
        date_problem = self.date_problem(header.get("Date"))
        if date_problem:
            problems.insert(0, date_problem)
        if not problems:
            self.log(LOGINFO, "pass")
            return DECLINED
        self.adjust_karma(-len(problems))
        return self.get_reject(problems[0], "; ".join(problems))

    def date_problem(self, date):
        if not date or (self.past is None and self.future is None):
            return None
        try:
            stamp = email.utils.parsedate_to_datetime(" ".join(str(date).split())).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            self.log(LOGINFO, f"skip, date not parseable ({date})")
            return None
        now = self.app.clock.time()
        if self.past and stamp < now - self.past * DAY:
            self.log(LOGINFO, f"fail, date too old ({date})")
            return "The Date header is too far in the past"
        if self.future and stamp > now + self.future * DAY:
            self.log(LOGINFO, f"fail, date in future ({date})")
            return "The Date header is too far in the future"
        return None
