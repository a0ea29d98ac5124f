"""bench_sample - the full-chain benchmark's spamd sample (bench/full_chain.py).

Messages without an `X-Bench-Scan` header field are marked as from a whitelisted
sender (transaction note whitelistsender) at data_post, so the spamassassin plugin
listed after this one skips them: spamd sees only the sampled messages. The Perl
twin is bench/perl/bench_sample. Placed after dkim, so DKIM still verifies every
message. Arguments: none.  Hooks: data_post.
"""

from qpsmtpd_py.api import DECLINED, Plugin


class BenchSample(Plugin):
    arguments = ()

    def hook_data_post(self, transaction):
        if not (transaction.header and transaction.header.get("X-Bench-Scan")):
            transaction.notes["whitelistsender"] = 1
        return DECLINED
