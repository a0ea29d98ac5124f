"""t_cfresult - test plugin: a content filter reporting to cf_wrapper. At data_post it
puts the given return code for each listed recipient into the transaction note
cf_wrapper_results (and declines, as cf_wrapper wants).

Arguments:  ADDRESS=CODE ...      (t_cfresult v@example.test=DENY)
"""

from qpsmtpd_py.api import DECLINED, Plugin, return_code


class TCfResult(Plugin):
    def register(self, *pairs):
        self.results = {}
        for pair in pairs:
            address, code = pair.split("=", 1)
            self.results[address] = return_code(code)

    def hook_data_post(self, transaction):
        notes = transaction.notes.setdefault("cf_wrapper_results", {})
        for rcpt in transaction.recipients:
            if rcpt.address in self.results:
                notes[rcpt.address] = self.results[rcpt.address]
        return DECLINED
