"""parse_addr_withhelo - strict RFC 821 MAIL/RCPT syntax for clients that said HELO.

RFC 821 (plain SMTP, HELO) has no ESMTP parameters: `MAIL FROM:<a@b> SIZE=10`
is only valid after EHLO. With this plugin a HELO client that adds anything after
the address is refused:

  501 No parameters allowed in MAIL    (or RCPT)

EHLO clients keep the normal ESMTP parsing. Syntax errors the core already
catches keep their replies (`501 Syntax error in command`, `501 could not parse
your mail from command`, `501 could not parse recipient`).

Arguments: none.  Config files: none.
Hooks: mail_pre and rcpt_pre, registered ahead of every other plugin's so the
check runs whatever the load order (qpsmtpd used mail_parse/rcpt_parse, which
qpsmtpd_py does not have). It answers DONE after its own 501, DECLINED otherwise.
Example config/plugins line:  parse_addr_withhelo
"""

from qpsmtpd_py.api import DECLINED, DONE, LOGINFO, Plugin


class ParseAddrWithhelo(Plugin):
    arguments = ()                # none but loglevel: anything else stops start-up

    def register(self, *args):
        super().register(*args)
        self.register_hook("mail_pre", self.check_mail, unshift=True)
        self.register_hook("rcpt_pre", self.check_rcpt, unshift=True)

    def check_mail(self, transaction, path, params):
        return self._check("MAIL", params)

    def check_rcpt(self, transaction, path, params):
        return self._check("RCPT", params)

    def _check(self, verb, params):
        if self.connection.hello != "helo" or not params:
            return DECLINED
        self.log(LOGINFO, f"fail, HELO client sent ESMTP parameters to {verb}: "
                 + " ".join(sorted(params)))
        self.qp.respond(501, f"No parameters allowed in {verb}")
        return DONE
