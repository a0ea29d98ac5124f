"""queue/smtp-forward - relay each message to another SMTP server (the next hop).

Instead of delivering locally, the message is handed over by SMTP to HOST before
the client hears a reply, so the client's 250 means the next hop has taken
responsibility for it:

  250 Queued! <the next hop's reply, e.g. "Ok: queued as 4Xc9">
  452 Unable to queue message: 451 4.3.0 <its words>    it answered 4xx (DENYSOFT)
  552 Unable to queue message: 554 5.7.1 <its words>    it answered 5xx (DENY)
  451 Unable to queue message (<reason>)                 unreachable, time-out,
                                 broken reply, greeting/EHLO/XCLIENT refused (DECLINED)

DECLINED lets a later queue plugin (say queue/maildir as a fallback) try; with
none the client gets 451 and retries later. If the next hop refuses any
recipient the message goes to nobody (RSET): permanently refused when every
refusal was 5xx, else temporarily - verify recipients at RCPT time (rcpt plugins)
so this does not happen.

Arguments:  HOST [PORT] [xclient] [timeout S] [deadline S]
  HOST      name or IP address of the next hop ([::1] style for IPv6)
  PORT      default 25
  timeout   seconds for each step (connecting, each command, each reply), default 60
  deadline  seconds for the whole forward, from connecting to the reply to the
            message, default 300: a next hop that answers one byte at a time is
            given up at this point and the client gets 451 (it retries later)
  xclient   send Postfix's XCLIENT command (client address, port, name, HELO,
            protocol, AUTH user: the attributes the server offers), so the next
            hop applies its policy to the real client. The next hop must allow us
            (Postfix: smtpd_authorized_xclient_hosts); if it does not offer
            XCLIENT, messages fail temporarily.

The EHLO name is config/me. BODY=8BITMIME and SMTPUTF8 are passed on when the
client used them and the next hop offers them. Hooks: queue.

Examples:
  queue/smtp-forward 10.2.2.2
  queue/smtp-forward smtp.internal.example 10025 xclient
"""

import re

from qpsmtpd_py.api import (
    DECLINED, DENY, DENYSOFT, LOGERROR, LOGINFO, LOGWARN, OK, Flag, Host, Int, Keyword,
    Number, Plugin, Positional, SMTPClient, SMTPError, xtext,
)

TIMEOUT = 60
DEADLINE = 300
_ENHANCED = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}\s*")


class SMTPForward(Plugin):
    arguments = (
        Positional("HOST", Host(), None, "the next hop", required=True),
        Positional("PORT", Int(min=1, max=65535), 25, "its port"),
        Flag("xclient", "send Postfix's XCLIENT command with the real client's attributes"),
        Keyword("timeout", Number(min=0.1, max=3600, unit="seconds"), float(TIMEOUT),
                "for each step: connecting, each command, each reply"),
        Keyword("deadline", Number(min=0.1, max=86400, unit="seconds"), float(DEADLINE),
                "for the whole forward (then 451)"),
    )

    def register(self, *args):
        self.host = self.args["HOST"]
        self.port = self.args["PORT"]
        self.xclient = self.args["xclient"]
        self.timeout = self.args["timeout"]
        self.deadline = self.args["deadline"]

    def hook_queue(self, transaction):
        self.log(LOGINFO, f"forwarding to {self.host}:{self.port}")
        try:
            with SMTPClient.connect(self.host, self.port, timeout=self.timeout,
                                    deadline=self.deadline) as smtp:
                final = self.forward(smtp, transaction)
                smtp.quit()
        except SMTPError as exc:
            if exc.reply is None:
                self.log(LOGERROR, f"error, {exc}")
                return DECLINED, "Unable to queue message (next hop failed)"
            self.log(LOGWARN, f"fail, {self.host} {exc}")
            return (DENY if exc.permanent else DENYSOFT), f"Unable to queue message: {exc.reply}"
        except OSError as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            self.log(LOGERROR, f"error, {self.host}:{self.port}: {reason}")
            return DECLINED, f"Unable to queue message ({reason.lower()})"
        self.log(LOGINFO, f"pass, {self.host} accepted: {final}")
        return OK, f"Queued! {_ENHANCED.sub('', final.text)}".rstrip()

    def forward(self, smtp, transaction):
        """The whole SMTP dialogue; returns the next hop's reply to the message."""
        smtp.start(self.app.me, then=self.send_xclient if self.xclient else None)
        smtp.mail_from(transaction)
        refused = []
        for rcpt in transaction.recipients:
            reply = smtp.command(f"RCPT TO:{rcpt.format()}")
            if reply.kind != 2:
                refused.append(reply)
                self.log(LOGINFO, f"fail, {self.host} refused {rcpt}: {reply}")
        if refused:
            smtp.command("RSET")
            worst = next((r for r in refused if r.kind != 5), refused[0])
            raise SMTPError(f"refused {len(refused)} recipient(s)", worst)
        return smtp.expect(smtp.send_data(transaction.iter_message()), 2, "message")

    def send_xclient(self, smtp):
        if "XCLIENT" not in smtp.esmtp:
            raise SMTPError(f"{self.host} does not offer XCLIENT (xclient is configured)")
        offered = set(smtp.esmtp["XCLIENT"].upper().split())
        conn = self.connection
        ip = conn.remote_ip
        values = {
            "ADDR": f"IPV6:{ip}" if ":" in ip else ip,
            "PORT": conn.remote_port,
            "NAME": conn.remote_host or "[UNAVAILABLE]",
            "HELO": conn.hello_host or "[UNAVAILABLE]",
            "PROTO": "ESMTP" if conn.hello == "ehlo" else "SMTP",
            "LOGIN": conn.auth_user,
            "DESTADDR": conn.local_ip,
            "DESTPORT": conn.local_port,
        }
        attrs = [f"{name}={xtext(value)}" for name, value in values.items()
                 if name in offered and value not in (None, "", 0)]
        if attrs:
            smtp.expect(smtp.command("XCLIENT " + " ".join(attrs)), 2, "XCLIENT")
            smtp.hello(self.app.me)
