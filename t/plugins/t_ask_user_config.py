"""t_ask_user_config - test plugin: asks the user_config hook for the recipient's
`t_reject_me` setting at RCPT and refuses with its first line when there is one."""

from qpsmtpd_py.api import DECLINED, DENY, OK, Plugin


class TAskUserConfig(Plugin):
    arguments = ()

    def hook_rcpt(self, transaction, rcpt, params):
        code, values, _ = self.app.hooks.run("user_config", transaction, rcpt, "t_reject_me")
        if code == OK and values:
            return DENY, values[0]
        return DECLINED
