"""dmarc - apply the From domain's DMARC policy (RFC 7489) to incoming mail.

After the header has arrived, the plugin takes the domain of the From header, looks
up its policy (`_dmarc.<domain>` TXT; when that has none, the organizational domain's,
found with the Public Suffix List: mail.example.co.uk -> _dmarc.example.co.uk), and
checks alignment:
  SPF   the sender_permitted_from result (note `dmarc_spf`) is pass for a domain that
        matches the From domain (aspf=s: the same name; r, the default: the same
        organizational domain);
  DKIM  a signature the dkim plugin verified (note `dkim_signatures`) has a d= that
        matches the From domain (adkim=s|r likewise).
One aligned pass is a DMARC pass. On a fail the policy decides: p= for the domain
itself, sp= (else p=) when the policy came from the organizational domain; pct=N
applies it to N % of failing messages, the others get the next milder policy
(reject -> quarantine -> none). List sender_permitted_from and dkim before dmarc.

What each disposition does here:
  none        accepted; recorded.
  reject      refused at the end of DATA: 552 `failed DMARC policy` (reject_type),
              karma -3.
  quarantine  `quarantine reject` (the default, as qpsmtpd): refused like reject.
              `quarantine header`: accepted, with the header field
              `X-DMARC-Quarantine: <from domain> (p=quarantine)` for the delivery agent
              or the user's filter to file it as junk (Sieve: header :contains
              "X-DMARC-Quarantine" ""), karma -3. `quarantine accept`: only recorded.
Messages without a From header: `empty from address, null sender?`; a From header the
plugin cannot read, or several From fields: `unparseable from header` (both through
the reject policy). A policy lookup that fails (DNS time-out, SERVFAIL) is a
temperror: 452 `DMARC policy lookup failed, try again later` (accepted with
`reject 0`), never an accept because the DNS was down. Relay clients are skipped;
whitelisted clients (is_immune) are recorded but never refused.

Every message gets one `dmarc=` entry in its Authentication-Results, e.g.
`dmarc=fail (p=reject sp=quarantine dis=reject) header.from=example.org`
(results pass, fail, none (no policy), temperror, permerror).

Arguments:
  reject 0|1|naughty      default 1
  reject_type WORD        perm (default), temp, disconnect, temp_disconnect
  quarantine reject|header|accept   what p=quarantine does (default reject)
  reporting 0|1           accepted for qpsmtpd configs: aggregate reports are not
                          stored or sent (the rua= address is logged at LOGDEBUG)
  public_suffix_list FILE the list to use, e.g. Debian's
                          /usr/share/publicsuffix/public_suffix_list.dat (default: the
                          copy inside the publicsuffixlist package)

Notes (transaction): `dmarc_result` {result, disposition, policy (the p= or sp= that
applied, None without a policy), domain, org_domain, spf_aligned, dkim_aligned};
`reject_dmarc` ("1" when refused; sender_permitted_from's no_dmarc_policy reads
dmarc_result).
Hooks: data_post_headers (evaluate), data_post (refuse).

Example (qpsmtpd's advice: the others record, dmarc decides):
  sender_permitted_from reject 1
  dkim reject 0
  dmarc reject 1

Differences from qpsmtpd: no Mail::DMARC, so no report storage; several From fields
are refused (a qpsmtpd TODO); quarantine can be delivered marked instead of refused;
a failed policy lookup defers instead of passing. Needs the extra `dmarc`
(publicsuffixlist, authres).
"""

import random
from email.utils import getaddresses

from qpsmtpd_py.api import (
    DECLINED, DENYSOFT, DNSFailure, LOGDEBUG, LOGINFO, REJECT, REJECT_TYPE, Bool, Choice, Keyword,
    Path, Plugin, aligned, organizational_domain, printable, require_extra, set_auth_result,
)

authres = require_extra("authres", "authres", "dmarc", "python3-authres", "dmarc")
require_extra("publicsuffixlist", "publicsuffixlist", "dmarc", "python3-publicsuffixlist", "dmarc")
from authres.dmarc import DMARCAuthenticationResult  # noqa: E402

MILDER = {"reject": "quarantine", "quarantine": "none", "none": "none"}


class PolicyError(Exception):
    """The policy could not be looked up (DNS failure)."""


def parse_record(text):
    """{tag: value} of a DMARC record (tags lower case), or None if it is not one."""
    if not text.startswith("v=DMARC1"):
        return None
    tags = {}
    for part in text.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep:
            tags.setdefault(key.strip().lower(), value.strip())
    if tags.get("v") != "DMARC1":
        return None
    return tags


class Dmarc(Plugin):
    arguments = (
        REJECT, REJECT_TYPE.but(default="perm"),
        Keyword("quarantine", Choice("reject", "header", "accept"), "reject",
                "what a p=quarantine policy does"),
        Keyword("reporting", Bool(), True, "accepted; reports are not stored or sent"),
        Keyword("public_suffix_list", Path(), None, "the Public Suffix List file to use"),
    )
    rng = random.Random()

    def register(self, *args):
        if self.args["public_suffix_list"]:
            organizational_domain("example.org", self.args["public_suffix_list"])   # read it now

    def hook_data_post_headers(self, transaction):
        if self.connection.relay_client:
            self.log(LOGINFO, "skip, relay client")
            return DECLINED
        notes = transaction.notes
        domain, problem = self.from_domain(transaction)
        if problem:
            self.log(LOGINFO, f"fail, {problem}")
            set_auth_result(notes, "dmarc", DMARCAuthenticationResult(result="permerror"))
            notes["dmarc_result"] = {"result": "permerror", "disposition": "reject", "policy": None}
            if not self.is_immune():
                notes["reject_dmarc"] = problem
            return DECLINED
        psl = self.args["public_suffix_list"]
        org = organizational_domain(domain, psl)
        try:
            policy, source = self.find_policy(domain, org)
        except PolicyError as exc:
            self.log(LOGINFO, f"error, {exc}")
            set_auth_result(notes, "dmarc", DMARCAuthenticationResult(result="temperror", header_from=domain))
            notes["dmarc_result"] = {"result": "temperror", "disposition": None, "policy": None,
                                     "domain": domain, "org_domain": org}
            if str(self.args["reject"]) != "0" and not self.is_immune():
                notes["reject_dmarc"] = "temperror"
            return DECLINED
        result = {"domain": domain, "org_domain": org, "policy": None, "disposition": "none",
                  "spf_aligned": False, "dkim_aligned": False}
        notes["dmarc_result"] = result
        if policy is None:
            result["result"] = "none"
            self.log(LOGINFO, f"skip, no policy for {domain}")
            set_auth_result(notes, "dmarc", DMARCAuthenticationResult(result="none", header_from=domain))
            return DECLINED
        p = policy.get("p", "").lower()
        sp = policy.get("sp", "").lower() or p
        applies = sp if source != domain else p
        result["policy"] = applies
        spf = notes.get("dmarc_spf") or {}
        result["spf_aligned"] = (spf.get("result") == "pass" and bool(spf.get("domain"))
                                 and aligned(spf["domain"], domain, policy.get("aspf", "r") == "s", psl))
        result["dkim_aligned"] = any(
            sig["result"] == "pass" and sig["domain"]
            and aligned(sig["domain"], domain, policy.get("adkim", "r") == "s", psl)
            for sig in notes.get("dkim_signatures") or [])
        passed = result["spf_aligned"] or result["dkim_aligned"]
        result["result"] = "pass" if passed else "fail"
        disposition = "none" if passed else applies
        if not passed and self.rng.randrange(100) >= self.pct(policy):
            disposition = MILDER[disposition]
            self.log(LOGINFO, f"pct={policy.get('pct')}: {applies} sampled out, {disposition} instead")
        result["disposition"] = disposition
        comment = f"p={p}" + (f" sp={policy['sp'].lower()}" if "sp" in policy else "") + f" dis={disposition}"
        set_auth_result(notes, "dmarc", DMARCAuthenticationResult(
            result=result["result"], header_from=domain, result_comment=comment))
        if policy.get("rua"):
            self.log(LOGDEBUG, f"rua={printable(policy['rua'])} (reports are not sent)")
        how = ("spf" if result["spf_aligned"] else "") + ("+dkim" if result["dkim_aligned"] else "")
        if passed:
            self.log(LOGINFO, f"pass, {domain} ({how.strip('+')} aligned)")
            return DECLINED
        self.log(LOGINFO, f"fail, {domain}: not aligned, policy {applies}, disposition {disposition}")
        if disposition == "none" or self.is_immune():
            return DECLINED
        self.adjust_karma(-3)
        if disposition == "quarantine" and self.args["quarantine"] != "reject":
            if self.args["quarantine"] == "header":
                transaction.header.add("X-DMARC-Quarantine", f"{domain} (p=quarantine)")
            return DECLINED
        notes["reject_dmarc"] = "1"
        return DECLINED

    def hook_data_post(self, transaction):
        why = transaction.notes.get("reject_dmarc")
        if not why:
            return DECLINED
        if why == "temperror":
            return DENYSOFT, "DMARC policy lookup failed, try again later"
        if why == "1":
            return self.get_reject("failed DMARC policy", "DMARC")
        return self.get_reject(why, why)

    # -- helpers ---------------------------------------------------------------------------
    def from_domain(self, transaction):
        """(domain, None) or (None, the refusal text)."""
        fields = transaction.header.get_all("From") or []
        if not fields or not any(f.strip() for f in fields):
            return None, "empty from address, null sender?"
        if len(fields) > 1:
            return None, "unparseable from header"
        domains = set()
        for _name, addr in getaddresses(fields):
            if "@" not in addr:
                return None, "unparseable from header"
            domains.add(addr.rsplit("@", 1)[1].strip().rstrip(".").lower())
        if len(domains) != 1 or not all(d and "." in d for d in domains):
            return None, "unparseable from header"
        return domains.pop(), None

    def find_policy(self, domain, org):
        """(tags, the domain whose record it is) or (None, None)."""
        for name in dict.fromkeys((domain, org)):
            try:
                texts = self.resolver.query(f"_dmarc.{name}", "TXT")
            except DNSFailure as exc:
                raise PolicyError(f"policy lookup for {name} failed: {exc}") from None
            records = [r for r in (parse_record(t) for t in texts) if r is not None]
            if len(records) > 1:
                self.log(LOGINFO, f"_dmarc.{name} has {len(records)} records: none applies")
                return None, None
            if records:
                tags = records[0]
                if tags.get("p", "").lower() not in ("none", "quarantine", "reject"):
                    if tags.get("rua"):
                        tags["p"] = "none"          # RFC 7489 6.6.3: rua with a bad p= -> none
                    else:
                        self.log(LOGINFO, f"_dmarc.{name}: bad p= '{printable(tags.get('p', ''))}', ignored")
                        return None, None
                if tags.get("sp", "").lower() not in ("", "none", "quarantine", "reject"):
                    del tags["sp"]
                return tags, name
        return None, None

    @staticmethod
    def pct(policy):
        try:
            return max(0, min(100, int(policy.get("pct", "100"))))
        except ValueError:
            return 100
