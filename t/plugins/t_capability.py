"""t_capability - test plugin: offer EHLO keywords.

Arguments: keywords to add with add_capability() in the ehlo hook (each twice, to
show they are listed once); `note:WORD` pushes WORD onto the old `capabilities`
transaction note instead, as qpsmtpd plugins do. `INJECT` tries a keyword with a
line break in it (refused: it would forge a reply line).
"""

from qpsmtpd_py.api import DECLINED, Plugin


class TCapability(Plugin):
    def register(self, *words):
        self.words = words

    def hook_ehlo(self, transaction, host, *rest):
        for word in self.words:
            if word.startswith("note:"):
                transaction.notes.setdefault("capabilities", []).append(word[5:])
            elif word == "INJECT":
                self.add_capability("X-BAD\r\n250 forged")
            else:
                self.add_capability(word.replace("_", " "))
                self.add_capability(word.replace("_", " "))
        return DECLINED
