"""t_parsed - test plugin for Plugin.parsed_config: answers HELO with
`550 parsed N times: WORDS`, where WORDS are the lines of config/t_parsed
(upper-cased by the parser) and N counts the parser runs in this process."""

from qpsmtpd_py.api import DENY, Plugin

RUNS = [0]


def parse(lines):
    RUNS[0] += 1
    return " ".join(line.upper() for line in lines)


class TParsed(Plugin):
    def hook_helo(self, transaction, host, *rest):
        words = self.parsed_config("t_parsed", parse)
        return DENY, f"parsed {RUNS[0]} times: {words}"
