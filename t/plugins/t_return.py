"""t_return - test plugin: answer one hook with a fixed return code.

Arguments:  HOOK CODE [MESSAGE ...]
  HOOK     any hook name (mail, rcpt, data, queue, connect, helo, ...)
  CODE     OK DENY DENYSOFT DENY_DISCONNECT DENYSOFT_DISCONNECT DECLINED DONE,
           or NONE (the hook returns None, which the engine must log and skip)
  MESSAGE  the reply text; a literal \\n splits it into reply lines

With DONE the plugin answers the client itself: `250 t_return done`.
Load a second instance with `t_return:2 ...`.
"""

from qpsmtpd_py import constants as C
from qpsmtpd_py.plugin import Plugin


class TReturn(Plugin):
    def register(self, *args):
        if len(args) < 2:
            raise ValueError("t_return needs HOOK CODE [MESSAGE]")
        self.hook = args[0]
        self.code_name = args[1].upper()
        if self.code_name != "NONE" and C.return_code(self.code_name) is None:
            raise ValueError(f"t_return: unknown code {args[1]}")
        self.message = " ".join(args[2:]).replace("\\n", "\n") or None
        self.register_hook(self.hook, self.answer)

    def answer(self, transaction, *args):
        if self.code_name == "NONE":
            return None
        code = C.return_code(self.code_name)
        if code == C.DONE:
            self.qp.respond(250, "t_return done")
        if self.message is None:
            return code
        return code, self.message
