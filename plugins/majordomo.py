"""majordomo - enforce a Majordomo list's restrict_post before accepting the mail.

Majordomo itself refuses non-member posts only after the message was accepted,
so the poster gets a bounce much later (or a spammer's forged sender does). This
plugin reads the list's Majordomo configuration and refuses posts from senders
that restrict_post does not allow, during the SMTP dialogue.

Which recipients are lists:
  * with `lists_dir DIR` (Majordomo's $listdir): <name>@<domain> is the list
    `name` when DIR/<name>.config exists (name lowercased; letters, digits and
    . _ - only), in one of our own domains (me, rcpthosts, morercpthosts) or,
    with `domains`, in one of those.
  * a plugin that maps addresses (aliases) may set the recipient's note
    `majordomo_list` (or `recipient_options` = {'majordomo_list': ...}) to the
    list path, as with Peter Holzer's aliases plugin:
      mylist@example.com: mylist@lists.example.com (majordomo_list=/var/lib/majordomo/lists/mylist)
The list path P means the config P.config; relative restrict_post files are in
P's directory.

The list config (<list>.config, Majordomo's `key = value` syntax; `key << END`
blocks are skipped) is read for
  restrict_post = mylist:mylist-posters
a colon- or space-separated list of files in the list directory, each one address
a line ("Name <addr>" and "addr (Name)" forms work; # comments). Only senders in
one of them may post. Without restrict_post anyone may post. Addresses compare
case-insensitively (as Majordomo does).

Arguments (key/value pairs):
  lists_dir DIR       Majordomo's list directory (see above)
  domains d1,d2       only these recipient domains hold lists (default: our own)
  check_envelope 0|1  check the envelope sender at RCPT (default 1)
  check_header 0|1    check the From: header addresses at the end of DATA
                      (default 0); every list recipient of the message must
                      allow one of them, else the whole message is refused
  reject 0|1, reject_type perm|temp|disconnect   as usual (0: log only)

Replies:
  550 5.7.1 Sorry, only members may post to mylist@example.com (#5.7.1)   (RCPT)
  552 5.7.1 Sorry, only members may post to mylist@example.com (#5.7.1)   (end of DATA)
  450 ... list configuration error, please try again later
      when a restrict_post file is missing or unreadable or names a path outside
      the list directory (logged with the file), so nothing slips through while
      the list is broken.

Files are re-read when they change. Hooks: rcpt, data_post (check_header).
Examples:
  majordomo lists_dir /var/lib/majordomo/lists domains lists.example.com
  majordomo lists_dir /var/lib/majordomo/lists check_envelope 0 check_header 1
"""

import os
import re
from email.utils import getaddresses

from qpsmtpd_py.api import (
    DECLINED, DENYSOFT, LOGERROR, LOGINFO, REJECT, REJECT_TYPE, Bool, Checked, Domains,
    Keyword, Plugin, is_local_domain,
)

_LIST_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_SAFE_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
CONFIG_ERROR = "list configuration error, please try again later"


class ListError(Exception):
    """The list's configuration cannot be used; the text names the file."""


class Majordomo(Plugin):
    arguments = (
        Keyword("lists_dir", Checked(lambda path: _directory(path), "an existing directory",
                                     "DIR"), None,
                "Majordomo's list directory: <name>@<domain> is a list when DIR/<name>.config "
                "exists"),
        Keyword("domains", Domains(), frozenset(), "only these recipient domains hold lists "
                "(default: our own)"),
        Keyword("check_envelope", Bool(), True, "check the envelope sender at RCPT"),
        Keyword("check_header", Bool(), False, "check the From: header addresses at the end "
                "of DATA"),
        REJECT,
        REJECT_TYPE,
    )

    def register(self, *args):
        self.lists_dir = self.args["lists_dir"]
        self.domains = self.args["domains"]
        self.check_envelope = self.args["check_envelope"]
        self.check_header = self.args["check_header"]
        if self.check_header:
            self.register_hook("data_post", self.header_check)

    # -- which lists, who may post ---------------------------------------------------------
    def list_path(self, rcpt):
        """The list path (without .config) the recipient stands for, or None."""
        note = rcpt.notes.get("majordomo_list")
        options = rcpt.notes.get("recipient_options")
        if not note and isinstance(options, dict):
            note = options.get("majordomo_list")
        if note:
            return str(note)
        if not self.lists_dir or not rcpt.host:
            return None
        if not (rcpt.host.lower() in self.domains if self.domains
                else is_local_domain(self, rcpt.host)):
            return None
        name = (rcpt.user or "").lower()
        if not _LIST_NAME.match(name):
            return None
        path = os.path.join(self.lists_dir, name)
        return path if os.path.isfile(path + ".config") else None

    def allowed_posters(self, path):
        """Lowercase addresses allowed to post, or None when anyone may."""
        restrict = self.read_file(path + ".config", parse_config).get("restrict_post")
        if not restrict:
            return None
        allowed = set()
        for name in re.split(r"[:\s]+", restrict.strip()):
            if not name:
                continue
            if not _SAFE_FILE.match(name):
                raise ListError(f"{path}.config: restrict_post file '{name}' is not a plain "
                                "file name in the list directory")
            allowed |= self.read_file(os.path.join(os.path.dirname(path), name), parse_members)
        return allowed

    def read_file(self, path, parse):
        try:
            return self.parsed_file(path, parse)
        except OSError as exc:
            raise ListError(f"{path}: {exc.strerror}")

    # -- hooks ---------------------------------------------------------------------------
    def hook_rcpt(self, transaction, rcpt, params=None):
        path = self.list_path(rcpt)
        if path is None:
            return DECLINED
        try:
            allowed = self.allowed_posters(path)
        except ListError as exc:
            self.log(LOGERROR, f"error, list {os.path.basename(path)}: {exc}")
            return DENYSOFT, CONFIG_ERROR
        if allowed is None:
            self.log(LOGINFO, f"pass, {rcpt.address} is an open list")
            return DECLINED
        rcpt.notes["majordomo_restrict"] = allowed
        if not self.check_envelope:
            return DECLINED
        sender = transaction.sender
        if sender is not None and sender.address.lower() in allowed:
            self.log(LOGINFO, f"pass, {sender.address} may post to {rcpt.address}")
            return DECLINED
        return self.get_reject(refusal(rcpt),
                               f"{sender.address if sender else '<>'} may not post to {rcpt.address}")

    def header_check(self, transaction):
        lists = [r for r in transaction.recipients if r.notes.get("majordomo_restrict") is not None]
        if not lists:
            return DECLINED
        header = transaction.header
        authors = {addr.lower() for _, addr in getaddresses(header.get_all("From") if header else [])
                   if addr}
        for rcpt in lists:
            if not authors & rcpt.notes["majordomo_restrict"]:
                return self.get_reject(refusal(rcpt),
                                       f"From: {', '.join(sorted(authors)) or 'missing'} "
                                       f"may not post to {rcpt.address}")
        self.log(LOGINFO, "pass, From: may post to every list")
        return DECLINED


def refusal(rcpt):
    return f"Sorry, only members may post to {rcpt.address} (#5.7.1)"


def parse_config(text):
    """Majordomo `key = value` lines -> dict; `key << TAG ... TAG` blocks skipped."""
    values, end_tag = {}, None
    for line in text.splitlines():
        stripped = line.strip()
        if end_tag is not None:
            if stripped == end_tag:
                end_tag = None
            continue
        if not stripped or stripped.startswith("#"):
            continue
        block = re.match(r"^([\w-]+)\s*<<\s*(\S+)$", stripped)
        if block:
            end_tag = block.group(2)
            continue
        key, sep, value = stripped.partition("=")
        if sep:
            values[key.strip().lower()] = value.strip()
    return values


def parse_members(text):
    """One address a line: addr, Name <addr>, addr (Name); # comments."""
    members = set()
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.search(r"<([^<>\s]+@[^<>\s]+)>", line)
        address = match.group(1) if match else line.split()[0]
        if "@" in address:
            members.add(address.lower())
    return members


def _directory(path):
    if not os.path.isdir(path):
        raise ValueError("no such directory")
    return path
