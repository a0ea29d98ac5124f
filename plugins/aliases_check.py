"""aliases_check - refuse recipients that are not in config/aliases, and note the
expansion of those that are (Peter J. Holzer's aliases plugin pair).

Config file aliases, one alias a line:  PATTERN [(OPTIONS)]: ADDRESS, ADDRESS ...
  hjp,peter.holzer@example.com,example.org (denysoft_greylist, spamassassin_reject_threshold=10): hjp@mail.example.com
  postmaster, abuse: sysadm@example.com
  sysadm@example.com: hjp@example.com, gina@example.com
  hjp@mail.example.com: hjp@mail.example.com
PATTERN is a comma list of local parts, @, a comma list of domains (every
combination is an alias); a pattern without @ is a bare local part, valid in every
domain named in the file or listed in me/rcpthosts/morercpthosts, and without a
domain (RCPT TO:<postmaster>). Unlike sendmail's aliases, the expansions are full
addresses. Lines that cannot be parsed are logged with file and line and skipped.
An address that maps to itself is a final mailbox.

At RCPT, a recipient is looked up (case-insensitively); user+detail@domain is found
through user@domain when it has no alias of its own.
  * Found: the recursive expansion is noted (the detail is kept: postmaster+test@
    becomes sysadm+test@ ... hjp+test@; loops end; duplicates are removed) and the
    recipient is DECLINED, so rcpt_ok (or an always-OK plugin) still decides.
  * Not found, in a domain named in the file:
      550 Sorry, no mailbox here by that name. (#5.1.1)
    Relay clients and whitelisted senders are not refused. Other domains, and a
    <postmaster> without domain, are not decided (DECLINED).

Notes for other plugins (the address keys are the recipients as given at RCPT):
  transaction note expanded_recipients  {recipient: [final addresses]}
  transaction note recipient_options    {recipient: {option: value or True}}
  address note recipient_options        the same options on the recipient itself
  address note expanded_recipients      its final addresses
The options are those of the line that matched the recipient (not of the lines
reached by expansion). aliases_rewrite replaces the recipients by the expansion
after DATA; the plugin `aliases` does both.

Hooks: rcpt. Load it before rcpt_ok.
Example config/plugins lines:  aliases_check / aliases_rewrite / rcpt_ok
"""

from qpsmtpd_py.api import DECLINED, DENY, LOGINFO, NO_MAILBOX, AliasTable, Plugin, is_local_domain


class AliasesCheck(Plugin):
    arguments = ()                # none but loglevel: anything else stops start-up

    def table(self):
        lines = self.config_list("aliases")
        cache = self.__dict__.setdefault("_alias_cache", [None, None])
        if cache[0] is not lines:
            cache[:] = [lines, AliasTable(lines, log=self.log)]
        return cache[1]

    def hook_rcpt(self, transaction, rcpt, params=None):
        table = self.table()

        def is_ours(domain):
            return table.is_ours(domain) or is_local_domain(self, domain)

        found = table.lookup(rcpt.address, is_ours)
        if found is None:
            if (rcpt.host or "").lower() not in table.domains:
                return DECLINED
            if self.is_immune():
                return DECLINED
            self.log(LOGINFO, f"fail, {rcpt.address} is not in aliases")
            return DENY, NO_MAILBOX
        _targets, options, _detail = found
        expanded = table.expand(rcpt.address, is_ours)
        transaction.notes.setdefault("expanded_recipients", {})[rcpt.address] = expanded
        transaction.notes.setdefault("recipient_options", {})[rcpt.address] = dict(options)
        rcpt.notes["recipient_options"] = dict(options)
        rcpt.notes["expanded_recipients"] = expanded
        self.log(LOGINFO, f"pass, {rcpt.address} -> {', '.join(expanded)}")
        return DECLINED
