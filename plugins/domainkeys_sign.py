"""domainkeys_sign - sign outgoing mail with a DomainKey-Signature (RFC 4870, historic).

For receivers that still check DomainKeys only. Mail from relay clients and
authenticated users is signed for the domain of its From header (else the envelope
sender's) with the same keys the dkim plugin uses: config/dkim/<domain>/selector and
`private` (or `<selector>.private`; parent domains and symbolic links as in dkim).
A DKIM key record (`v=DKIM1; k=rsa; p=...`) also serves DomainKeys verifiers, so one
DNS record covers both. The signature (rsa-sha1, `nofws` by default) is prepended as
the last step before queueing (queue_pre) and covers every header field present then
(h= lists them) and the body. A key that cannot be used is logged and the message goes
out unsigned.

Arguments:
  canonicalization nofws|simple   default nofws (survives reformatting)
  keydir DIR                      where the key directories are: a directory under the
                                  config directory (default dkim) or an absolute path
Hooks: queue_pre.
Example:  domainkeys_sign canonicalization simple

qpsmtpd had no such plugin in its distribution (the wiki names one); this one is new.
"""

import os

from email.utils import getaddresses

from qpsmtpd_py.api import (
    DECLINED, LOGERROR, LOGINFO, Choice, Keyword, Path, Plugin, domainkeys, key_to_sign_with,
    message_bytes, require_extra,
)

require_extra("cryptography", "cryptography", "dkim", "python3-cryptography", "domainkeys_sign")


class DomainkeysSign(Plugin):
    arguments = (
        Keyword("canonicalization", Choice("nofws", "simple"), "nofws", "how the text is canonicalized"),
        Keyword("keydir", Path(), "dkim", "the key directories (under the config directory, or absolute)"),
    )

    def key_bases(self):
        keydir = self.args["keydir"]
        if os.path.isabs(keydir):
            return [os.path.dirname(keydir.rstrip("/"))], os.path.basename(keydir.rstrip("/"))
        return self.app.config.dirs, keydir

    def hook_queue_pre(self, transaction):
        if not self.connection.relay_client:
            return DECLINED
        domain = None
        for _name, addr in getaddresses(transaction.header.get_all("From") or []):
            if "@" in addr:
                domain = addr.rsplit("@", 1)[1].lower()
                break
        domain = domain or (transaction.sender.host or "").lower()
        key = key_to_sign_with(self, domain, *self.key_bases())
        if key is None:
            return DECLINED
        try:
            value = domainkeys.sign(message_bytes(transaction), key.domain, key.selector,
                                    key.private_key(), self.args["canonicalization"])
        except (OSError, ValueError, TypeError, domainkeys.DomainKeysError) as exc:
            self.log(LOGERROR, f"error, signing for {domain} with {key.key_path}: {exc}; not signed")
            return DECLINED
        transaction.header.add("DomainKey-Signature", value, prepend=True)
        self.log(LOGINFO, f"pass, signed with d={key.domain} s={key.selector}")
        return DECLINED
