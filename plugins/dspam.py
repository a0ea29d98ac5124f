"""dspam - classify messages with the DSPAM statistical filter (its command-line
client), mark them, refuse spam, and train DSPAM from other plugins' verdicts.

The message, with an `X-Envelope-From: <sender>` field on top, goes to
`DSPAM_BIN --user USER --mode=tum --process --deliver=summary --stdout` on its
standard input (an argument list, never a shell; a temporary file removed
afterwards). USER is the recipient's address (lower case) when there is one
recipient, else the user the server runs as. DSPAM's summary line
(`X-DSPAM-Result: user; result="Spam"; class="Spam"; probability=1.0000;
confidence=1.00; signature=...`) becomes:
  * the transaction note `dspam`: {'class', 'result', 'probability', 'confidence',
    'signature'} (strings, as qpsmtpd kept them);
  * header fields (on top) `X-DSPAM-Result: Spam, probability=1.0000, confidence=1.00`
    (an older one is replaced) and `X-DSPAM-Signature: SIG` (for training later:
    DSPAM's Preference "signatureLocation=headers").
Relay clients and whitelisted hosts/senders, and messages over 500000 bytes, are
not classified. dspam must come after spamassassin in config/plugins for
`reject agree` and `autolearn spamassassin`.

Arguments:
  dspam_bin PATH       the dspam program; default /usr/local/bin/dspam
  reject P|agree       refuse spam whose probability is at least P (0..1, default 1)
                       with full confidence; 0 never refuses; `agree`: refuse only
                       when SpamAssassin (note `spamassassin`) also says spam
  reject_type perm|temp|disconnect|temp_disconnect   default perm
  autolearn naughty|karma|spamassassin|any   train DSPAM (--mode=toe --source=error
                       --class=spam|innocent) when it disagrees with: the naughty
                       note, the connection's karma (below -2 or above 2),
                       SpamAssassin's autolearn, or any of these
  timeout SECONDS      the most one dspam run may take; default 60
  failure tempfail|accept  when dspam fails, crashes or times out: temp-fail (default)
                       or deliver with `X-Scan-Failed: dspam: REASON`
Replies: `552 dspam says, no spam please (#5.6.1)` (temp: `452 ... (#4.6.1)`);
`552 we agree, no spam please` (reject agree). Karma: -2 when both agree on spam,
+1 when both agree on ham with confidence above 0.9.

Hooks: data_post.
Example:
  dspam dspam_bin /usr/bin/dspam reject 0.95 autolearn spamassassin

Differences from qpsmtpd: a dspam_bin that is not an executable file stops start-up
(qpsmtpd logged it and did nothing); dspam runs with an argument list and a
time-out, and its failures follow the failure policy (qpsmtpd accepted unscanned).
qpsmtpd compared `probability <= reject` to pass, so its default (1) never refused;
here, as its manual says, a probability at or above `reject` refuses.
"""

import os
import pwd

from qpsmtpd_py.api import (
    DECLINED, LOGDEBUG, LOGERROR, LOGINFO, LOGWARN, REJECT_TYPE, Checked, Choice, Keyword, Path,
    Plugin, ProgramError, ScanProgram, is_soft, message_file, scan_arguments, scan_failed,
)

SIZE_LIMIT = 500_000


def threshold(text):
    if text.lower() == "agree":
        return "agree"
    try:
        value = float(text)
    except ValueError:
        raise ValueError("expected a probability (0 to 1) or agree") from None
    if not 0 <= value <= 1:
        raise ValueError("expected a probability (0 to 1) or agree")
    return value


def parse_summary(line):
    """dspam's summary line -> {'class': 'Spam', 'result': 'Spam', 'probability': ...}."""
    fields = {}
    for part in line.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        fields[key] = value.strip('"')
    if "class" not in fields or "result" not in fields:
        return None
    return {k: fields.get(k, "") for k in ("class", "result", "probability", "confidence",
                                          "signature")}


def current_user():
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


class DSpam(Plugin):
    arguments = (
        Keyword("dspam_bin", Path(), "/usr/local/bin/dspam", "the dspam program"),
        Keyword("reject", Checked(threshold, "a probability 0-1 or agree", "P|agree"), 1.0,
                "refuse spam at this probability (or when SpamAssassin agrees)"),
        REJECT_TYPE.but(default="perm"),
        Keyword("autolearn", Choice("naughty", "karma", "spamassassin", "any"), None,
                "train dspam when it disagrees with this"),
        *scan_arguments(60.0, what="dspam"),
    )

    def register(self, *args):
        path = self.args["dspam_bin"]
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise ValueError(f"dspam_bin {path} is not an executable file: install dspam "
                             "and/or set dspam_bin")
        self.dspam = ScanProgram(path, timeout=self.args["timeout"], failure=self.args["failure"],
                                 name="dspam")

    def hook_data_post(self, transaction):
        if self.is_immune():
            return DECLINED
        if transaction.data_size > SIZE_LIMIT:
            self.log(LOGINFO, f"skip, too big ({transaction.data_size})")
            return DECLINED
        try:
            result = self.run(transaction, ["--mode=tum", "--process"])
        except (ProgramError, OSError) as exc:
            return scan_failed(self, transaction, self.dspam, exc)
        transaction.notes["dspam"] = result
        header = transaction.header
        header.delete("X-DSPAM-Result")
        header.add("X-DSPAM-Signature", result["signature"], prepend=True)
        header.add("X-DSPAM-Result", f"{result['result']}, probability={result['probability']}, "
                   f"confidence={result['confidence']}", prepend=True)
        self.autolearn(transaction, result)
        return self.decide(transaction, result)

    def username(self, transaction):
        if len(transaction.recipients) == 1:
            return transaction.recipients[0].address.lower()
        self.log(LOGINFO, f"multiple recipients ({len(transaction.recipients)}), ignoring user prefs")
        return current_user()

    def run(self, transaction, mode):
        """One dspam run on the message; its summary as a dict (ProgramError if none)."""
        sender = transaction.sender.format() if transaction.sender else "<>"
        prefix = f"X-Envelope-From: {sender}\n".encode("utf-8", "surrogateescape")
        args = ["--user", self.username(transaction), *mode, "--deliver=summary", "--stdout"]
        with message_file(transaction, prefix=prefix) as path:
            self.log(LOGDEBUG, f"running {self.dspam.path} {' '.join(args)}")
            output = self.dspam.run(args, keepalive=self.keepalive, stdin=path)
        summary = parse_summary(output.lines[0]) if output.lines else None
        if output.status != 0 or summary is None:
            text = " ".join(output.output.split())[:200]
            raise ProgramError(f"{self.dspam}: exit code {output.status}: {text or 'no summary'}")
        return summary

    def train(self, transaction, klass):
        try:
            self.run(transaction, ["--mode=toe", "--source=error", f"--class={klass}"])
        except (ProgramError, OSError) as exc:
            self.log(LOGWARN, f"error, training as {klass}: {exc}")

    def autolearn(self, transaction, result):
        learn = self.args["autolearn"]
        if learn is None:
            return
        innocent, spam = result["result"] == "Innocent", result["result"] == "Spam"
        if learn in ("naughty", "any") and self.is_naughty() and innocent:
            self.log(LOGINFO, "training naughty FN message as spam")
            return self.train(transaction, "spam")
        karma = self.connection.notes.get("karma")
        if learn in ("karma", "any") and isinstance(karma, (int, float)):
            if karma < -2 and innocent:
                self.log(LOGINFO, f"training bad karma ({karma}) FN as spam")
                return self.train(transaction, "spam")
            if karma > 2 and spam:
                self.log(LOGINFO, f"training good karma ({karma}) FP as ham")
                return self.train(transaction, "innocent")
        if learn in ("spamassassin", "any"):
            sa = transaction.notes.get("spamassassin") or {}
            if not sa.get("is_spam") or not sa.get("autolearn"):
                self.log(LOGERROR, "SA results or SA autolearn missing")
                return None
            if sa["is_spam"] == "Yes" and sa["autolearn"] == "spam" and innocent:
                self.log(LOGINFO, "training SA FN as spam")
                return self.train(transaction, "spam")
            if sa["is_spam"] == "No" and sa["autolearn"] == "ham" and spam:
                self.log(LOGINFO, "training SA FP as ham")
                return self.train(transaction, "innocent")
        return None

    def decide(self, transaction, d):
        status = f"{d['class']}, {d['confidence']} c."
        reject = self.args["reject"]
        if reject == "agree":
            return self.agree(transaction, d)
        if not reject:
            self.log(LOGINFO, f"skip, reject disabled ({status})")
            return DECLINED
        if d["class"] == "Innocent":
            self.log(LOGINFO, f"pass, {status}")
            return DECLINED
        if self.connection.relay_client:
            self.log(LOGINFO, f"skip, allowing spam, user authenticated ({status})")
            return DECLINED
        probability, confidence = _number(d["probability"]), _number(d["confidence"])
        if probability is None or probability < reject:
            self.log(LOGINFO, f"pass, {d['class']} probability is too low ({d['probability']} < {reject:g})")
            return DECLINED
        if confidence != 1:
            self.log(LOGINFO, f"pass, {d['class']} confidence is too low ({d['confidence']})")
            return DECLINED
        self.log(LOGINFO, f"fail, {d['class']}, ({d['confidence']} confident)")
        code = self.get_reject_type()
        return code, f"dspam says, no spam please (#{'4' if is_soft(code) else '5'}.6.1)"

    def agree(self, transaction, d):
        sa = transaction.notes.get("spamassassin") or {}
        status = f"{d['class']}, {d['confidence']} c"
        if not sa.get("is_spam"):
            self.log(LOGINFO, f"pass, cannot agree, SA results missing ({status})")
            return DECLINED
        if d["class"] == "Spam" and sa["is_spam"] == "Yes":
            self.adjust_karma(-2)
            self.log(LOGINFO, f"fail, agree, {status}")
            return self.get_reject_type(), "we agree, no spam please"
        if d["class"] == "Innocent" and sa["is_spam"] == "No" and (_number(d["confidence"]) or 0) > .9:
            self.adjust_karma(1)
        self.log(LOGINFO, f"pass, {'agree' if (d['class'] == 'Spam') == (sa['is_spam'] == 'Yes') else 'disagree'}, {status}")
        return DECLINED


def _number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None
