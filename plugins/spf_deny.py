"""spf_deny - refuse SPF hard failures of domains that publish no DMARC policy
(qpsmtpd's plugin of 2016, later folded into sender_permitted_from's no_dmarc_policy).

With DMARC, sender_permitted_from runs with a level that refuses nothing and dmarc
decides by the domain's policy. For domains without a DMARC policy this plugin adds
the refusal of SPF `fail` at the end of DATA:
  552 `SPF - fail: <why>` (the reject policy; reject_type temp: 452)
List it after sender_permitted_from and dmarc. The same as `sender_permitted_from
no_dmarc_policy 1`, kept so an existing config loads.

Arguments: reject 0|1|naughty (default 1), reject_type (default perm).
Reads the transaction notes `spfquery` and `dmarc_result`. Hooks: data_post.
Example:
  sender_permitted_from reject 1
  dmarc
  spf_deny
"""

from qpsmtpd_py.api import DECLINED, LOGINFO, REJECT, REJECT_TYPE, Plugin


class SpfDeny(Plugin):
    arguments = (REJECT, REJECT_TYPE.but(default="perm"))

    def hook_data_post(self, transaction):
        spf, dmarc = transaction.notes.get("spfquery"), transaction.notes.get("dmarc_result")
        if self.is_immune() or not spf or not dmarc:
            return DECLINED
        if spf["result"] == "fail" and dmarc.get("result") == "none":
            self.log(LOGINFO, f"fail, {spf['why']}")
            return self.get_reject(f"SPF - fail: {spf['why']}", "SPF fail, no DMARC policy")
        return DECLINED
