"""mailinglist_simple - very simple mailing lists: distribution lists kept in files.

A message to a list address is delivered to every member, with list headers
added so auto-responders and vacation programs leave the list alone:

  Reply-To: <list address>        (replaces the author's Reply-To)
  Precedence: bulk
  X-Mailing-List: <list address>

and the list's signature appended to the text. A PUBLIC list takes mail from
anyone; a PROTECTED list only from its members (envelope sender).

Config file `mailinglist_simple`, one list a line:
  LIST  PUBLIC|PROTECTED  MEMBERS  [SIGNATURE] [signature=FILE] [owner=ADDRESS]

  LIST       the list address, user@domain (case-insensitive)
  MEMBERS    a file with one member address a line (# comments), or, when it holds
             an @, the members themselves, comma-separated:  a@x.org,b@y.org
  SIGNATURE  a file whose text is appended to each message (also signature=FILE)
  owner=     envelope sender for the delivery to the members, so bounces from dead
             member addresses go to the list owner (default: the poster's sender)
Relative file names are taken from the directory of the config file. Members
files are re-read when they change. A malformed line is logged with file and line
and ignored; the other lists keep working.

What happens:
  RCPT   the list address is accepted (OK) if the sender may post; PROTECTED
         lists refuse others:  550 5.7.1 Sorry, only members may post to LIST (#5.7.1)
         One list per message: a second list or another recipient in the same
         transaction gets  450 4.5.3 Please send to LIST in a separate message
         (the sending server retries it in a new transaction).
         A list whose members file cannot be read gets a temporary failure (logged).
  end of DATA   a message that already carries this list's X-Mailing-List header is
         a loop:  552 5.4.6 Mail loop: this message has been through LIST (#5.4.6).
         Otherwise the headers are set and the signature is added: to a plain
         text message at the end; to a multipart message as an extra text/plain
         part before the closing boundary; other messages (base64 or
         quoted-printable bodies, a single HTML part) get no signature (logged).
  queue  the recipients are replaced by the members (the list address itself and
         duplicates removed), so the queue plugin delivers one copy per member.

Arguments: reject 0|1|naughty and reject_type, for the refusal of a PROTECTED
list's non-member (default: 550, as above).

Hooks: rcpt, data_post, queue_pre.
Example config/mailinglist_simple:
  staff@example.com  PROTECTED  staff.members  staff.signature  owner=postmaster@example.com
  news@example.com   PUBLIC     alice@example.com,bob@example.org
"""

import os
import re
from email.message import Message

from qpsmtpd_py.api import (
    DECLINED, DENY, DENYSOFT, LOGERROR, LOGINFO, OK, REJECT, REJECT_TYPE, Address, Plugin,
)

ACCESS = ("PUBLIC", "PROTECTED")
NOTE = "mailinglist_simple"


class ListError(Exception):
    """A list file cannot be read; the text names it."""


class MailinglistSimple(Plugin):
    arguments = (REJECT.but(help="for a PROTECTED list's refusal: 0 only logs, naughty "
                            "leaves it to the naughty plugin"), REJECT_TYPE)

    # -- configuration -------------------------------------------------------------------
    def lists(self):
        """{list address (lowercase): settings} from config/mailinglist_simple,
        parsed (and malformed lines logged) once per change of the file."""
        return self.parsed_config("mailinglist_simple", self.parse_lists)

    def parse_lists(self, lines):
        lists = {}
        for line in lines:
            try:
                name, settings = parse_line(line)
            except ValueError as exc:
                self.log(LOGERROR, f"{line.origin}: {exc}; line ignored")
                continue
            lists[name] = settings
        return lists

    def resolve(self, settings, name):
        """A file name from the config line, relative to the config file's directory."""
        path = settings[name]
        base = os.path.dirname(settings["origin_path"] or "")
        return path if os.path.isabs(path) else os.path.join(base, path)

    def members(self, settings):
        if "@" in settings["members"]:
            return parse_addresses(settings["members"].replace(",", "\n"))
        return self.read_file(self.resolve(settings, "members"), parse_addresses)

    def signature(self, settings):
        if not settings.get("signature"):
            return ""
        return self.read_file(self.resolve(settings, "signature"), str)

    def read_file(self, path, parse):
        try:
            return self.parsed_file(path, parse)
        except OSError as exc:
            raise ListError(f"{path}: {exc.strerror}")

    # -- hooks -----------------------------------------------------------------------------
    def hook_rcpt(self, transaction, rcpt, params=None):
        current = transaction.notes.get(NOTE)
        address = rcpt.address.lower()
        settings = self.lists().get(address) if rcpt.host else None
        if settings is None:
            if current:
                return DENYSOFT, f"Please send to {rcpt.address} in a separate message (#4.5.3)"
            return DECLINED
        if current == address:
            return OK                                  # the same list twice
        if current or transaction.recipients:
            return DENYSOFT, f"Please send to {rcpt.address} in a separate message (#4.5.3)"
        try:
            members = self.members(settings)
        except ListError as exc:
            self.log(LOGERROR, f"error, list {address}: {exc}")
            return DENYSOFT, "list configuration error, please try again later"
        if not members - {address}:
            self.log(LOGERROR, f"error, list {address} has no members ({settings['origin']})")
            return DENY, f"{rcpt.address} has no members"
        sender = transaction.sender
        if settings["access"] == "PROTECTED" and (
                sender is None or sender.address.lower() not in members):
            return self.get_reject(f"Sorry, only members may post to {rcpt.address} (#5.7.1)",
                                   f"{sender.address if sender else '<>'} is no member of {address}")
        transaction.notes[NOTE] = address
        self.log(LOGINFO, f"pass, {settings['access'].lower()} list {address}")
        return OK

    def hook_data_post(self, transaction):
        address = transaction.notes.get(NOTE)
        if not address:
            return DECLINED
        settings = self.lists().get(address)
        if settings is None:
            return DENYSOFT, "list configuration changed, please try again later"
        header = transaction.header
        if any(v.strip().strip("<>").lower() == address for v in header.get_all("X-Mailing-List")):
            self.log(LOGINFO, f"fail, mail loop through {address}")
            return DENY, f"Mail loop: this message has been through {address} (#5.4.6)"
        for name, value in (("Reply-To", f"<{address}>"), ("Precedence", "bulk"),
                            ("X-Mailing-List", f"<{address}>")):
            header.delete(name)
            header.add(name, value)
        try:
            text = self.signature(settings)
        except ListError as exc:
            self.log(LOGERROR, f"error, list {address}: {exc}")
            return DENYSOFT, "list configuration error, please try again later"
        if text:
            problem = add_signature(transaction, text)
            if problem:
                self.log(LOGINFO, f"signature of {address} not added: {problem}")
        return DECLINED

    def hook_queue_pre(self, transaction):
        address = transaction.notes.get(NOTE)
        if not address:
            return DECLINED
        settings = self.lists().get(address)
        try:
            members = self.members(settings) if settings else None
        except ListError as exc:
            self.log(LOGERROR, f"error, list {address}: {exc}")
            members = None
        if not members:
            return DENYSOFT, "list configuration error, please try again later"
        transaction.recipients = [Address.parse(m) for m in sorted(members) if m != address]
        if settings.get("owner"):
            transaction.sender = Address.parse(settings["owner"])
        self.log(LOGINFO, f"distributing {address} to {len(transaction.recipients)} members")
        return DECLINED


def parse_line(line):
    """A config line -> (list address, settings); ValueError says what is wrong."""
    words = line.split()
    if len(words) < 3:
        raise ValueError("need LIST PUBLIC|PROTECTED MEMBERS")
    name, access, members, rest = words[0].lower(), words[1].upper(), words[2], words[3:]
    address = Address.parse(name)
    if address is None or not address.host:
        raise ValueError(f"'{words[0]}' is not a list address")
    if access not in ACCESS:
        raise ValueError(f"'{words[1]}' must be PUBLIC or PROTECTED")
    settings = {"access": access, "members": members, "signature": None, "owner": None,
                "origin": line.origin, "origin_path": line.path}
    for word in rest:
        key, sep, value = word.partition("=")
        if not sep and settings["signature"] is None:
            settings["signature"] = word
        elif key.lower() in ("signature", "owner") and value:
            settings[key.lower()] = value
        else:
            raise ValueError(f"unknown option '{word}'")
    if settings["owner"] and Address.parse(settings["owner"]) is None:
        raise ValueError(f"owner '{settings['owner']}' is not an address")
    return address.address.lower(), settings


def parse_addresses(text):
    """Member addresses, one a line (or comma-separated), lowercased; # comments."""
    members = set()
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        address = Address.parse(line) if line else None
        if address is not None and address.host:
            members.add(address.address.lower())
    return members


def add_signature(transaction, text):
    """Append the signature where a mail reader shows it; returns why not, or ''."""
    header = transaction.header
    params = Message()
    params["Content-Type"] = " ".join((header.get("Content-Type") or "text/plain").split())
    ctype = params.get_content_type()
    encoding = (header.get("Content-Transfer-Encoding") or "7bit").strip().lower()
    text = text if text.endswith("\n") else text + "\n"
    sig = text.encode("utf-8", "surrogateescape")
    fh = transaction.body_fh()
    if ctype.startswith("multipart/"):
        boundary = params.get_param("boundary")
        if not boundary:
            return "multipart message without a boundary"
        part = (f"--{boundary}\nContent-Type: text/plain; charset=utf-8\n"
                f"Content-Transfer-Encoding: {'7bit' if sig.isascii() else '8bit'}\n\n").encode() + sig
        return insert_before_closing(transaction, fh, f"--{boundary}--".encode(), part)
    if ctype != "text/plain" or encoding not in ("7bit", "8bit", "binary"):
        return f"a {ctype} body in {encoding}"
    fh.seek(0, os.SEEK_END)
    end = fh.tell()
    if end:
        fh.seek(end - 1)
        if fh.read(1) != b"\n":
            sig = b"\n" + sig
    fh.seek(0, os.SEEK_END)
    fh.write(sig)
    transaction.data_size += len(sig)
    return ""


def insert_before_closing(transaction, fh, closing, part, window=65536):
    fh.seek(0, os.SEEK_END)
    size = fh.tell()
    start = max(0, size - window)
    fh.seek(start)
    tail = fh.read()
    index = -1
    for match in re.finditer(rb"(?m)^" + re.escape(closing), tail):
        index = match.start()
    if index < 0:
        fh.seek(0, os.SEEK_END)
        return "no closing boundary near the end of the message"
    fh.seek(start + index)
    rest = fh.read()
    fh.seek(start + index)
    fh.truncate()
    fh.write(part + rest)
    transaction.data_size += len(part)
    return ""
