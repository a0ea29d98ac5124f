"""spam_gourmet - self-destructing addresses: a number of messages, or until a date.

Give a web shop an address that works for a few messages, or until a date, and
then refuses everything (like the Spam Gourmet service). No set-up per address:
the address itself says how long it lives. Accepted mail is delivered to the real
user: the recipient is rewritten to user@domain (the extra parts removed).

Count-limited: the local part ends in a word and a number (in either order)
  steve.5.count@example.com   steve.count.5@example.com   (synonyms)
  steve.shop.5@example.com    steve.5.shop@example.com    ("shop" is any word)
accepts 5 messages; the 6th and later are refused. Each word has its own counter
(steve.shop.N and steve.news.N are independent). The number of the first message
that arrives is kept: once steve.shop.5 has been used, steve.shop.500 still
refuses after 5 messages, so a spammer cannot raise the limit.

Date-limited: the local part ends in `until` and a date (in either order)
  steve.until.20250310@example.com   steve.2025-03-10.until@example.com
accepts mail up to and including that day (the server's local time).

Numbers are 1 to 10000 and the user part must not be empty; anything else is an
ordinary address and left alone, and so is every address outside `domains` when
that argument is given.

  550 5.1.1 Sorry, that address has expired. (#5.1.1)

A message counts once it has been received completely (end of DATA), even if a
later content filter refuses it; an aborted transaction (RSET, QUIT, a refused
DATA) uses nothing. Should two messages race for the last use, the one that
loses gets a temporary failure (452) and, when its sender retries, the 550.

Arguments:
  domains d1,d2   only recipients in these domains are disposable (default: our
                  own domains: me, rcpthosts, morercpthosts; mail that relay
                  clients send out is never touched). Use it when real mailboxes
                  in some of your domains look like user.word.5.

Store: the counters live in the shared LMDB store (config file `store_dir`),
table `spam_gourmet`, key `user.word@domain` (lowercase), value `used/limit`,
kept forever (`qpsmtpd-store delete spam_gourmet KEY` revives an address).
An unusable store_dir stops the server at start-up; a store error during a
session gives the recipient a temporary failure (450) and is logged.

The RCPT reply and every later plugin (rcpt_ok, recipient checks, queue) see the
rewritten address, so list spam_gourmet before the plugins that validate
recipients. The original address is kept in the recipient's note
`spam_gourmet_original`.

Hooks: rcpt, data_post.
Examples:
  spam_gourmet
  spam_gourmet domains example.com,example.org
"""

import datetime
import re

from qpsmtpd_py.api import (
    DECLINED, DENY, DENYSOFT, LOGERROR, LOGINFO, LOGNOTICE, Domains, Keyword, Plugin,
    check_store, is_local_domain,
)

EXPIRED = "Sorry, that address has expired. (#5.1.1)"
TEMPFAIL = "Temporary failure, please try again later"
MAX_COUNT = 10000
_WORD = re.compile(r"^[a-z][a-z0-9_-]*$")
_DATE = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})$")


class SpamGourmet(Plugin):
    arguments = (
        Keyword("domains", Domains(), frozenset(), "only recipients in these domains are "
                "disposable (default: our own domains)"),
    )

    def register(self, *args):
        self.domains = self.args["domains"]
        check_store(self.app, "spam_gourmet")

    def table(self):
        return self.store.table("spam_gourmet")

    def hook_rcpt(self, transaction, rcpt, params=None):
        if not rcpt.host or not (rcpt.host.lower() in self.domains if self.domains
                                 else is_local_domain(self, rcpt.host)):
            return DECLINED
        form = parse_local_part(rcpt.user or "")
        if form is None:
            return DECLINED
        user, kind, value = form
        address = rcpt.address
        if kind == "until":
            if datetime.date.today() > value:
                self.log(LOGINFO, f"fail, {address} expired on {value.isoformat()}")
                return DENY, EXPIRED
        else:
            key = f"{user}.{value[0]}@{rcpt.host}".lower()
            try:
                used, limit = parse_entry(self.table().get(key), value[1])
            except Exception as exc:        # StoreError, lmdb.Error: never accept by accident
                self.log(LOGERROR, f"error, store: {exc}")
                return DENYSOFT, TEMPFAIL
            if used >= limit:
                self.log(LOGINFO, f"fail, {address} used up ({used}/{limit})")
                return DENY, EXPIRED
            rcpt.notes["spam_gourmet_key"] = (key, value[1])
            self.log(LOGINFO, f"pass, {address} used {used} of {limit}")
        rcpt.notes["spam_gourmet_original"] = address
        rcpt.user = user
        self.log(LOGINFO, f"rewrote {address} to {rcpt.address}")
        return DECLINED

    def hook_data_post(self, transaction):
        """Count the message for each disposable recipient, all or nothing."""
        wanted = {}
        for rcpt in transaction.recipients:
            if "spam_gourmet_key" in rcpt.notes:
                key, first_limit = rcpt.notes["spam_gourmet_key"]
                wanted[key] = first_limit
        counted = []
        try:
            table = self.table()
            for key, first_limit in wanted.items():
                outcome = {}
                table.update(key, use_one(first_limit, outcome))
                if not outcome["counted"]:
                    raise UsedUp(key)
                counted.append(key)
        except UsedUp as exc:
            self.log(LOGNOTICE, f"fail, {exc} was used up by another message meanwhile")
            self.give_back(counted)
            return DENYSOFT, TEMPFAIL
        except Exception as exc:
            self.log(LOGERROR, f"error, store: {exc}")
            self.give_back(counted)
            return DENYSOFT, TEMPFAIL
        return DECLINED

    def give_back(self, keys):
        for key in keys:
            try:
                self.table().update(key, give_one)
            except Exception as exc:
                self.log(LOGERROR, f"error, cannot give back a use of {key}: {exc}")


class UsedUp(Exception):
    pass


def parse_local_part(local):
    """'steve.shop.5' -> ('steve', 'count', ('shop', 5)); 'steve.until.20250310' ->
    ('steve', 'until', date); None for an ordinary local part."""
    parts = local.split(".")
    if len(parts) < 3 or not all(parts[-3:]):
        return None
    user, a, b = ".".join(parts[:-2]), parts[-2].lower(), parts[-1].lower()
    for word, other in ((a, b), (b, a)):
        if word == "until":
            date = parse_date(other)
            return (user, "until", date) if date else None
    for word, number in ((a, b), (b, a)):
        if _WORD.match(word) and number.isdigit() and 1 <= int(number) <= MAX_COUNT:
            return user, "count", (word, int(number))
    return None


def parse_date(text):
    match = _DATE.match(text)
    if not match:
        return None
    try:
        return datetime.date(*map(int, match.groups()))
    except ValueError:
        return None


def parse_entry(raw, first_limit):
    """Stored b'used/limit' -> (used, limit); a new address has used nothing."""
    if not raw:
        return 0, first_limit
    used, _, limit = raw.decode("ascii", "replace").partition("/")
    return int(used), int(limit or first_limit)


def use_one(first_limit, outcome):
    """An update function that counts one use if one is left (outcome['counted'])."""
    def update(raw):
        used, limit = parse_entry(raw, first_limit)
        outcome["counted"] = used < limit
        return f"{used + 1}/{limit}" if used < limit else raw
    return update


def give_one(raw):
    if not raw:
        return None
    used, limit = parse_entry(raw, 1)
    return f"{max(0, used - 1)}/{limit}"
