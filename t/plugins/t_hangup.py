"""t_hangup - test plugin: in hook HOOK, answer CODE TEXT and end the session
through the plugin API (respond_and_disconnect), as a real policy plugin does.
Every disconnect hook call is appended to the file MARKS.

Arguments: MARKS HOOK CODE TEXT...
"""

from qpsmtpd_py.api import DECLINED, Plugin


class THangup(Plugin):
    def register(self, marks, hook, code, *text):
        self.marks, self.code, self.text = marks, int(code), " ".join(text)
        self.register_hook(hook, self.hang_up)

    def hang_up(self, transaction, *args):
        self.qp.respond_and_disconnect(self.code, self.text)
        return DECLINED                 # never reached

    def hook_disconnect(self, transaction):
        with open(self.marks, "a") as f:
            f.write("disconnect\n")
        return DECLINED
