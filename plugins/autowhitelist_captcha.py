"""autowhitelist_captcha - challenge/response for protected recipients: unknown
senders must answer a CAPTCHA once before their mail is accepted.

Mail to a protected recipient (config file `autowhitelist_captcha`) from a sender
that is not yet known (its Reply-To address, else the envelope sender) is
temporarily refused, and a challenge goes back to that address through this
server's own queue plugins: a mail from the protected recipient with the subject
`... [captcha:TOKEN]` and a PNG image (drawn with Pillow) of a few characters. The
sender answers by replying with those characters in the first lines of the body:

  * the right answer whitelists the address (the reply itself is taken and dropped:
    `250 Thank you, your address is now whitelisted`); the first message is then
    accepted when the sender's server retries it;
  * a wrong answer is refused (`552 Wrong answer to the challenge, N tries left`);
    after max_failures wrong answers the address is blacklisted (`552 Your address
    is blacklisted here`) until the admin deletes its entry
    (`qpsmtpd-store delete captcha_blacklist ADDRESS`), which resets the count.
While a challenge is open, retries get `452 Your address is not verified yet: answer
the challenge sent to ADDRESS` without a new challenge. Bounces (null sender) pass,
and automatic mail (Auto-Submitted, Precedence bulk/list/junk) from unknown senders
is refused (`552 Automatic mail from unknown senders is not accepted here`) rather
than answered, so two auto-responders never talk to each other.

State lives in the shared store, so every worker sees it: tables
`captcha_whitelist` and `captcha_blacklist` (address -> when), `captcha_pending`
(token -> the open challenge: sender, recipient, answer, tries; expires after
pending_days) and `captcha_sender` (address -> its open token). The config files
`autowhitelist_captcha.whitelist` and `autowhitelist_captcha.blacklist` (one address
or @domain a line) are honoured too.

Config file `autowhitelist_captcha`: protected recipients, one a line:
`user@example.com`, `@example.com` or `example.com` (the whole domain).

Arguments:
  language en|de        the language of the challenge text; default en
  max_failures N        wrong answers before the blacklist; default 5
  pending_days N        how long a challenge stays open; default 7
  length N              characters in the image; default 6
Needs Pillow (`pip install 'qpsmtpd_py[captcha]'`, Debian: python3-pil).
Hooks: data_post, queue. Load it before the queue plugin.
Example:
  autowhitelist_captcha language de
"""

import base64
import email.utils
import io
import json
import random
import re

from qpsmtpd_py.api import (
    DECLINED, DENY, DENYSOFT, LOGINFO, LOGWARN, OK, Choice, Int, Keyword, Plugin, StoreError,
    queue_new_message, require_extra,
)

Image = require_extra("PIL.Image", "Pillow", "captcha", "python3-pil", "autowhitelist_captcha")
ImageDraw = require_extra("PIL.ImageDraw", "Pillow", "captcha", "python3-pil", "autowhitelist_captcha")
ImageFont = require_extra("PIL.ImageFont", "Pillow", "captcha", "python3-pil", "autowhitelist_captcha")

ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"          # no 0/O, 1/I look-alikes
TOKEN = re.compile(r"\[captcha:([A-Za-z0-9]{8,40})\]")
RNG = random.SystemRandom()
TEXT = {
    "en": ("Please confirm your mail to {rcpt}",
           "You sent a message to {rcpt}. To keep out spam, mail from new senders is only\n"
           "accepted once they have answered this question once.\n\n"
           "Please reply to this mail and write the characters shown in the attached image\n"
           "in the first line of your answer. Your message will then be delivered when your\n"
           "mail server sends it again (it does so by itself).\n"),
    "de": ("Bitte bestaetigen Sie Ihre E-Mail an {rcpt}",
           "Sie haben eine Nachricht an {rcpt} gesendet. Zum Schutz vor Spam wird E-Mail\n"
           "von neuen Absendern erst angenommen, wenn diese einmal diese Frage beantwortet\n"
           "haben.\n\nBitte antworten Sie auf diese E-Mail und schreiben Sie die Zeichen aus\n"
           "dem angehaengten Bild in die erste Zeile Ihrer Antwort. Ihre Nachricht wird dann\n"
           "zugestellt, sobald Ihr Mailserver sie erneut sendet (das geschieht von selbst).\n"),
}


def address_list(lines):
    return {line.strip().lower() for line in lines if line.strip()}


def listed(entries, address):
    address = address.lower()
    domain = address.rpartition("@")[2]
    return address in entries or f"@{domain}" in entries or domain in entries


def render(text, width=220, height=80):
    """A PNG of `text` with jitter and noise; bytes."""
    image = Image.new("RGB", (width, height), (245, 245, 240))
    draw = ImageDraw.Draw(image)
    try:
        font = ImageFont.truetype("DejaVuSans-Bold.ttf", 40)
    except OSError:
        try:
            font = ImageFont.load_default(size=40)
        except TypeError:                               # Pillow before 10.1
            font = ImageFont.load_default()
    for _ in range(8):
        draw.line([(RNG.randrange(width), RNG.randrange(height)) for _ in range(2)],
                  fill=tuple(RNG.randrange(90, 200) for _ in range(3)), width=2)
    step = (width - 20) // max(len(text), 1)
    for index, char in enumerate(text):
        draw.text((10 + index * step + RNG.randrange(-3, 4), RNG.randrange(5, 25)), char,
                  font=font, fill=tuple(RNG.randrange(0, 90) for _ in range(3)))
    for _ in range(300):
        draw.point((RNG.randrange(width), RNG.randrange(height)),
                   fill=tuple(RNG.randrange(256) for _ in range(3)))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


class AutowhitelistCaptcha(Plugin):
    arguments = (
        Keyword("language", Choice("en", "de"), "en", "the language of the challenge"),
        Keyword("max_failures", Int(min=1), 5, "wrong answers before the blacklist"),
        Keyword("pending_days", Int(min=1), 7, "days a challenge stays open"),
        Keyword("length", Int(min=4, max=12), 6, "characters in the image"),
    )

    def register(self, *args):
        self.white = self.store.table("captcha_whitelist")
        self.black = self.store.table("captcha_blacklist")
        self.pending = self.store.table("captcha_pending")
        self.by_sender = self.store.table("captcha_sender")

    def hook_data_post(self, transaction):
        protected = self.parsed_config("autowhitelist_captcha", address_list)
        rcpts = [r for r in transaction.recipients if listed(protected, r.address)]
        if not rcpts:
            return DECLINED
        sender = self.answer_address(transaction)
        if not sender:
            self.log(LOGINFO, "skip, bounce")
            return DECLINED
        try:
            return self.check(transaction, sender, rcpts[0].address.lower())
        except StoreError as exc:
            self.log(LOGWARN, f"error, {exc}")
            return DENYSOFT, "Temporary failure, try again later"

    def hook_queue(self, transaction):
        if transaction.notes.get("captcha_answer"):
            self.log(LOGINFO, "answer to a challenge taken and dropped")
            return OK, "Thank you, your address is now whitelisted"
        return DECLINED

    def answer_address(self, transaction):
        reply_to = transaction.header.get("Reply-To")
        if reply_to:
            parsed = email.utils.getaddresses([str(reply_to)])
            if parsed and "@" in parsed[0][1]:
                return parsed[0][1].lower()
        sender = transaction.sender
        return sender.address.lower() if sender is not None and not sender.is_null else ""

    def check(self, transaction, sender, rcpt):
        if self.white.get(sender) is not None or listed(
                self.parsed_config("autowhitelist_captcha.whitelist", address_list), sender):
            self.log(LOGINFO, f"pass, {sender} is whitelisted")
            return DECLINED
        if self.black.get(sender) is not None or listed(
                self.parsed_config("autowhitelist_captcha.blacklist", address_list), sender):
            self.log(LOGINFO, f"fail, {sender} is blacklisted")
            return DENY, "Your address is blacklisted here"
        found = TOKEN.search(str(transaction.header.get("Subject") or ""))
        if found:
            return self.answered(transaction, sender, found.group(1))
        token = self.by_sender.get(sender)
        if token is not None and self.pending.get(token.decode()) is not None:
            self.log(LOGINFO, f"defer, {sender} has an open challenge")
            return DENYSOFT, f"Your address is not verified yet: answer the challenge sent to {sender}"
        if self.automatic(transaction):
            self.log(LOGINFO, f"fail, automatic mail from unknown sender {sender}")
            return DENY, "Automatic mail from unknown senders is not accepted here"
        return self.challenge(transaction, sender, rcpt)

    def automatic(self, transaction):
        auto = str(transaction.header.get("Auto-Submitted") or "no").strip().lower()
        precedence = str(transaction.header.get("Precedence") or "").strip().lower()
        return not auto.startswith("no") or precedence in ("bulk", "list", "junk")

    def challenge(self, transaction, sender, rcpt):
        answer = "".join(RNG.choice(ALPHABET) for _ in range(self.args["length"]))
        token = "".join(RNG.choice(ALPHABET) for _ in range(16))
        message = self.challenge_mail(transaction, sender, rcpt, token, answer)
        code, messages = queue_new_message(self, "", [sender], message)
        if code != OK:
            self.log(LOGWARN, f"error, the challenge to {sender} could not be queued: "
                     f"{' '.join(messages)}")
            return DENYSOFT, "Unable to send the challenge, try again later"
        ttl = self.args["pending_days"] * 86400
        record = {"sender": sender, "rcpt": rcpt, "answer": answer, "tries": 0}
        self.pending.set(token, json.dumps(record), ttl=ttl)
        self.by_sender.set(sender, token, ttl=ttl)
        self.log(LOGINFO, f"defer, challenge {token} sent to {sender}")
        return DENYSOFT, (f"Your address is not verified yet: a challenge was sent to {sender}, "
                          "answer it and your mail will be accepted")

    def answered(self, transaction, sender, token):
        raw = self.pending.get(token)
        record = json.loads(raw) if raw is not None else None
        if record is None or record["sender"] != sender:
            self.log(LOGINFO, f"fail, unknown or expired challenge {token}")
            return DENY, "Unknown or expired challenge, send your message again for a new one"
        fh = transaction.body_fh()
        try:
            head = fh.read(4096).decode("utf-8", "replace")
        finally:
            transaction.body_bytes(0)
        lines = [re.sub(r"[\s>]", "", line).upper() for line in head.splitlines()[:20]]
        if any(record["answer"] in line for line in lines):
            self.white.set(sender, str(int(self.app.clock.time())))
            self.pending.delete(token)
            self.by_sender.delete(sender)
            transaction.notes["captcha_answer"] = token
            self.log(LOGINFO, f"pass, {sender} answered challenge {token}: whitelisted")
            return DECLINED
        record["tries"] += 1
        left = self.args["max_failures"] - record["tries"]
        if left <= 0:
            self.black.set(sender, str(int(self.app.clock.time())))
            self.pending.delete(token)
            self.by_sender.delete(sender)
            self.log(LOGINFO, f"fail, {sender}: {record['tries']} wrong answers, blacklisted")
            return DENY, "Wrong answer to the challenge; your address is now blacklisted here"
        self.pending.update(token, lambda old: json.dumps(record))
        self.log(LOGINFO, f"fail, wrong answer from {sender} ({left} tries left)")
        return DENY, f"Wrong answer to the challenge, {left} tries left"

    def challenge_mail(self, transaction, sender, rcpt, token, answer):
        subject, text = TEXT[self.args["language"]]
        boundary = "captcha-" + token
        image = base64.encodebytes(render(answer)).decode()
        original = transaction.header.get("Message-Id")
        fields = [f"From: <{rcpt}>", f"To: <{sender}>",
                  f"Subject: {subject.format(rcpt=rcpt)} [captcha:{token}]",
                  f"Date: {email.utils.formatdate(self.app.clock.time())}",
                  f"Message-Id: <captcha.{token}@{self.config('me')}>",
                  "Auto-Submitted: auto-replied", "MIME-Version: 1.0",
                  f'Content-Type: multipart/mixed; boundary="{boundary}"']
        if original:
            fields.append(f"In-Reply-To: {original}")
        return ("\n".join(fields) + "\n\n"
                f"--{boundary}\nContent-Type: text/plain; charset=us-ascii\n\n"
                + text.format(rcpt=rcpt) +
                f"\n--{boundary}\nContent-Type: image/png; name=\"captcha.png\"\n"
                "Content-Transfer-Encoding: base64\n"
                "Content-Disposition: inline; filename=\"captcha.png\"\n\n"
                + image + f"--{boundary}--\n")
