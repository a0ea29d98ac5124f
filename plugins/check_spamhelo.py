"""check_spamhelo - the old (0.84 and Debian) name of the helo plugin; see `helo`.
Without arguments it runs the lenient policy: the badhelo list (names and
regexes), forged localhost, forged or invalid address literals, bare IPs and our
own name, and closes the connection after the 550."""

from qpsmtpd_py.api import isa_plugin


class CheckSpamhelo(isa_plugin("helo")):
    pass
