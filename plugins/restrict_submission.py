"""restrict_submission - on the listed ports, only authenticated users may send.

Arguments: the local ports that are submission ports (default 587), e.g.

  restrict_submission 587 465

On those ports MAIL FROM from a client that has not authenticated (SMTP AUTH)
is refused with `530 5.7.0 Authentication required` (RFC 4954), so port 587 can
never be used as an unauthenticated relay or inbound MX. Other ports are not
affected. Put it before the other mail plugins.

Hooks: mail.
"""

from qpsmtpd_py.api import DECLINED, DONE, LOGINFO, Int, Plugin, Positional


class RestrictSubmission(Plugin):
    arguments = (
        Positional("ports", Int(min=1, max=65535), [587], "the local submission ports",
                   many=True),
    )

    def register(self, *args):
        self.ports = set(self.args["ports"])

    def hook_mail(self, transaction, sender, params):
        conn = self.connection
        if conn.local_port not in self.ports:
            return DECLINED
        if conn.auth_user:
            self.log(LOGINFO, f"pass, {conn.auth_user} authenticated on port {conn.local_port}")
            return DECLINED
        self.log(LOGINFO, f"fail, unauthenticated MAIL on submission port {conn.local_port}")
        self.qp.respond(530, "Authentication required", enhanced="5.7.0")
        return DONE
