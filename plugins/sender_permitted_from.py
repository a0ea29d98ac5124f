"""sender_permitted_from - check the sender's SPF policy (RFC 7208).

At MAIL the plugin asks whether the client's IP address may send mail for the
envelope sender's domain (for the null sender `<>`: for the HELO name, as RFC 7208
2.4 says), records the answer, and refuses according to the `reject` level. Every
message gets a `Received-SPF` header field and an `spf=` entry in the one
Authentication-Results header the server adds.

The lookups go through the server's own resolver (config `dns_servers`,
`dns_timeout`; the answers are shared with the other DNS plugins of the session),
never the system resolver. pyspf does the evaluation (mechanisms, macros, the
10-lookup and 2-void-lookup limits).

Arguments:
  reject N            0-6, how strict (below). Without it the config file `spfbehavior`
                      gives the level (qmail's control file: one number), else 0.
  spf_deny 1|2        the old spelling: 1 = reject 3, 2 = reject 4
  no_dmarc_policy N   0-4: refuse at the end of DATA, after the dmarc plugin found no
                      DMARC policy for the From domain (1 fail, 2 + softfail, 3 + neutral,
                      4 + none/permerror). List dmarc after this plugin. Default 0.
  timeout S           the most one whole SPF check may take (default 20 s, RFC 7208
                      4.6.4); each lookup has its own `dns_timeout` as well.

Levels and replies (the reply text follows `SPF - <result>: `):

  | result              | level | answer                                  |
  |---------------------|-------|-----------------------------------------|
  | pass                | any   | accepted (karma +1)                     |
  | fail                | 2     | 450 `SPF - fail: <why>`  (karma -1)     |
  | fail                | >= 3  | 550 `SPF - forgery: <why>`              |
  | softfail            | 3     | 450 `SPF - fail: <why>`  (karma -1)     |
  | softfail            | >= 4  | 550 `SPF - fail: <why>`                 |
  | neutral             | >= 5  | 550 `SPF - neutral: <why>`              |
  | none                | 6     | 550 `SPF - none: <why>`                 |
  | permerror           | 4, 5  | 450 `SPF - permerror: <why>`            |
  | permerror           | 6     | 550 `SPF - permerror: <why>`            |
  | temperror           | >= 2  | 450 `SPF - temperror: <why>`            |

  Level 0 or 1 only annotates; everything else is accepted. `<why>` is the receiver's
  comment, e.g. `domain of example.org does not designate 192.0.2.7 as permitted
  sender`; a domain's own explanation (exp=) is added for `fail`, in printable ASCII.
  A DNS server that does not answer gives temperror after at most `timeout` seconds:
  with level 2 or more the sender is asked to retry (450), never accepted blindly.

Relay clients and whitelisted senders (is_immune) are not checked; they count as an
SPF pass for dmarc.

Notes (transaction): `spfquery` {result, why, header, identity, scope, domain};
`dmarc_spf` {domain, scope (mfrom|helo), result} for the dmarc plugin; `spf_pass_host`
(the sender's domain, lower case) after a pass.
Hooks: mail, data_post_headers (prepends Received-SPF), data_post (no_dmarc_policy).
Header: `Received-SPF: Pass (mx.example.org: domain of example.com designates
192.0.2.7 as permitted sender) client-ip=192.0.2.7; envelope-from="a@example.com";
helo=mail.example.com; receiver=mx.example.org; mechanism="ip4:192.0.2.0/24";
identity=mailfrom`.
Authentication-Results: `spf=pass smtp.mailfrom=example.com` (`smtp.helo=` for `<>`).

Example:  sender_permitted_from reject 3

Differences from qpsmtpd: the null sender is checked against the HELO name (qpsmtpd
skipped it); the level and the `spfbehavior` file are read for each message, so a
changed file needs no restart; a check that cannot finish in `timeout` is a
temperror, not a hung worker. Needs the extra `spf` (pyspf, authres).
"""

import threading

from qpsmtpd_py.api import (
    DECLINED, DENY, DENYSOFT, DNSFailure, LOGERROR, LOGINFO, Int, Keyword, Number, Plugin,
    printable, require_extra, set_auth_result,
)

spf = require_extra("spf", "pyspf", "spf", "python3-spf", "sender_permitted_from")
authres = require_extra("authres", "authres", "spf", "python3-authres", "sender_permitted_from")

_session = threading.local()       # the resolver of the check running in this thread


def _lookup(name, qtype, strict=True, timeout=None):
    """pyspf's DNS function, answered by the session's resolver (config dns_servers)."""
    resolver = getattr(_session, "resolver", None)
    if resolver is None:
        raise spf.TempError("DNS: no resolver (SPF is checked only inside a session)")
    rdtype = "TXT" if qtype == "SPF" else qtype
    wait = resolver.timeout if not timeout else min(float(timeout), resolver.timeout)
    try:
        answers = resolver.query(name, rdtype, timeout=wait)
    except DNSFailure as exc:
        raise spf.TempError(f"DNS {exc}")
    out = []
    for text in answers:
        if rdtype == "MX":
            preference, _, exchange = text.partition(" ")
            out.append(((name, "MX"), (int(preference), exchange)))
        elif rdtype == "TXT":
            out.append(((name, qtype), (text.encode("utf-8"),)))
        else:
            out.append(((name, rdtype), text))
    return out


spf.DNSLookup = _lookup            # never the system resolver


LEVEL = Int(min=0, max=6)


class SenderPermittedFrom(Plugin):
    arguments = (
        Keyword("reject", LEVEL, None, "0-6: how strict (see the manual); default: file spfbehavior, else 0"),
        Keyword("spf_deny", Int(min=0, max=2), None, "old spelling: 1 = reject 3, 2 = reject 4"),
        Keyword("no_dmarc_policy", Int(min=0, max=4), 0,
                "0-4: refuse after DATA when the From domain has no DMARC policy"),
        Keyword("timeout", Number(min=1, max=300, unit="seconds"), 20.0,
                "the most one whole SPF check may take"),
    )

    def register(self, *args):
        if self.args["reject"] is None and self.args["spf_deny"]:
            self.args["reject"] = {1: 3, 2: 4}[self.args["spf_deny"]]
        if self.args["no_dmarc_policy"]:
            self.register_hook("data_post", self.no_dmarc_policy)

    def level(self):
        if self.args["reject"] is not None:
            return self.args["reject"]
        text = (self.config("spfbehavior") or "0").strip()
        try:
            return LEVEL.parse(text)
        except ValueError:
            self.log(LOGERROR, f"error, config spfbehavior: '{printable(text)}' is not 0-6; using 0")
            return 0

    # -- MAIL ------------------------------------------------------------------------------
    def hook_mail(self, transaction, sender, params):
        notes = transaction.notes
        notes.pop("spfquery", None)
        notes.pop("spf_pass_host", None)
        set_auth_result(notes, "spf")
        if self.is_immune():
            notes["dmarc_spf"] = {"domain": sender.host or "", "scope": "mfrom", "result": "pass"}
            return DECLINED
        helo = (self.connection.hello_host or "").strip()
        if sender.is_null or not sender.host or not sender.user:
            if not helo or "." not in helo or helo.startswith("["):
                self.log(LOGINFO, "skip, null sender and no HELO name to check")
                notes["dmarc_spf"] = {"domain": "", "scope": "helo", "result": "none"}
                return DECLINED
            scope, domain, identity = "helo", helo.lower(), ""
        elif sender.host.startswith("["):
            self.log(LOGINFO, f"skip, none: {printable(sender.host)} is an address literal (no SPF policy)")
            notes["dmarc_spf"] = {"domain": "", "scope": "mfrom", "result": "none"}
            return DECLINED
        else:
            scope, domain = "mfrom", sender.host.lower()
            identity = f"{sender.user}@{domain}"
        notes["dmarc_spf"] = {"domain": domain, "scope": scope, "result": "none"}

        query, result, why = self.evaluate(identity, helo, domain)
        header = query.get_header(result, self.receiver()) if query is not None else None
        notes["spfquery"] = {"result": result, "why": why, "header": header,
                             "identity": identity or f"postmaster@{domain}", "scope": scope,
                             "domain": domain}
        notes["dmarc_spf"]["result"] = result
        ident = {"smtp_mailfrom": domain} if scope == "mfrom" else {"smtp_helo": domain}
        set_auth_result(notes, "spf", authres.SPFAuthenticationResult(result=result, **ident))
        return self.decide(result, why, domain)

    def receiver(self):
        return self.qp.me if self.qp is not None else "localhost"

    def evaluate(self, identity, helo, domain):
        """(query, result, why) of one SPF check through the session's resolver."""
        _session.resolver = self.resolver
        try:
            query = spf.query(self.connection.remote_ip, identity, helo or domain,
                              receiver=self.receiver(), timeout=self.resolver.timeout,
                              querytime=self.args["timeout"])
            result, _code, explanation = query.check()
        except (spf.TempError, DNSFailure) as exc:
            return None, "temperror", printable(exc)
        finally:
            _session.resolver = None
        try:
            why = query.get_header_comment(result)
        except Exception:              # noqa: BLE001  a comment is only decoration
            why = result
        if result == "fail" and explanation and explanation != spf.EXPLANATIONS.get("fail"):
            why += f" ({explanation})"
        return query, result, printable(why)

    def decide(self, result, why, domain):
        level = self.level()
        if result == "pass":
            self.adjust_karma(1)
            self.transaction.notes["spf_pass_host"] = domain
            self.log(LOGINFO, f"pass, {why}")
            return DECLINED
        if result in ("fail", "softfail"):
            self.adjust_karma(-1)
        answer = None
        if result == "fail" and level >= 2:
            answer = (DENY, f"SPF - forgery: {why}") if level >= 3 else (DENYSOFT, f"SPF - fail: {why}")
        elif result == "softfail" and level >= 3:
            answer = (DENY if level >= 4 else DENYSOFT, f"SPF - fail: {why}")
        elif result == "neutral" and level >= 5:
            answer = (DENY, f"SPF - neutral: {why}")
        elif result == "none" and level >= 6:
            answer = (DENY, f"SPF - none: {why}")
        elif result == "permerror" and level >= 4:
            answer = (DENY if level >= 6 else DENYSOFT, f"SPF - permerror: {why}")
        elif result == "temperror" and level >= 2:
            answer = (DENYSOFT, f"SPF - temperror: {why}")
        if answer is None:
            self.log(LOGINFO, f"fail, tolerated, {result}, {why}" if result != "none"
                     else f"skip, none, {why}")
            return DECLINED
        self.log(LOGINFO, f"fail, {result}, {why}")
        return answer

    # -- DATA ------------------------------------------------------------------------------
    def hook_data_post_headers(self, transaction):
        result = transaction.notes.get("spfquery")
        if not result or not result.get("header") or self.is_immune():
            return DECLINED
        transaction.header.add("Received-SPF", result["header"], prepend=True)
        return DECLINED

    def no_dmarc_policy(self, transaction):
        """After dmarc: refuse by SPF alone when the From domain publishes no DMARC policy."""
        spfq, dmarc = transaction.notes.get("spfquery"), transaction.notes.get("dmarc_result")
        if self.is_immune() or not spfq or not dmarc or dmarc.get("policy") is not None:
            return DECLINED
        result, why = spfq["result"], spfq["why"]
        needed = {"fail": 1, "softfail": 2, "neutral": 3, "none": 4, "permerror": 4}.get(result)
        if needed is not None and self.args["no_dmarc_policy"] >= needed:
            self.log(LOGINFO, f"fail, {result} and no DMARC policy, {why}")
            return DENY, f"SPF - {result}: {why}"
        self.log(LOGINFO, "pass, no DMARC policy but SPF tolerated")
        return DECLINED
