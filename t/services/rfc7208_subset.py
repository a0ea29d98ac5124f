"""Make the rfc7208.test zone and its test cases from the RFC 7208 test suite.

    python t/services/rfc7208_subset.py rfc7208-tests.yml   (needs PyYAML)

The suite (rfc7208-tests.yml, shipped with pyspf's source as test/rfc7208-tests.yml;
licence in t/services/rfc7208-tests.LICENSE) gives each scenario its own DNS data, and
the scenarios reuse names (example.com ...). Here scenario N's names move under
sN.rfc7208.test (e1.example.com -> e1.example.com.s6.rfc7208.test, in the records too),
so one nsd zone holds them all. A case is kept only when pyspf, answered from that
moved data the way nsd and our resolver answer (CNAMEs followed, names outside the zone
refused -> temperror, no time-outs), still gives the suite's result; cases about
reverse (in-addr.arpa) data, time-outs or name lengths fall out that way.

Writes t/services/rfc7208.zone (records only; start-services.sh adds $ORIGIN and SOA)
and t/rfc7208_cases.json ([scenario, name, ip, mailfrom, helo, [results]]).
The products are committed; this script is run by hand when the subset should change.
"""

import ipaddress
import json
import os
import re
import sys

import spf
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ZONE = "rfc7208.test"
DOMAIN = re.compile(r"(?<![A-Za-z0-9_-])((?:[A-Za-z0-9_%{}*-]+\.)*example\d*\.(?:com|net|org))"
                    r"(?![A-Za-z0-9_-])", re.IGNORECASE)
LABEL = re.compile(r"^(\*|[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)$")


def move(text, suffix):
    return DOMAIN.sub(lambda m: f"{m.group(1)}.{suffix}", text)


def valid_name(name):
    name = name.rstrip(".")
    return len(name) <= 253 and all(LABEL.match(label) for label in name.split("."))


def records(scenario, suffix):
    """{(owner, type): [value, ...]} of a scenario, moved under suffix; None for a
    scenario whose data cannot be served (bad owner names, CNAME beside other data)."""
    out = {}
    for owner, rrs in scenario["zonedata"].items():
        if owner.lower().endswith(".arpa"):
            continue
        name = move(owner, suffix).lower()
        if not name.endswith(suffix) or not valid_name(name):
            continue
        for rr in rrs:
            if not isinstance(rr, dict):
                continue                           # TIMEOUT: nsd never times out
            for rtype, value in rr.items():
                if value == "TIMEOUT" or value == ["NONE"] or value == "NONE":
                    continue
                if rtype in ("TXT", "SPF"):
                    parts = [value] if isinstance(value, str) else list(value)
                    value = tuple(move(p, suffix) for p in parts)
                elif rtype == "MX":
                    value = (int(value[0]), move(value[1], suffix).lower().rstrip("."))
                    if value[1] and not valid_name(value[1]):
                        return None
                elif rtype in ("CNAME", "PTR"):
                    value = move(value, suffix).lower().rstrip(".")
                    if not valid_name(value):
                        return None
                elif rtype in ("A", "AAAA"):
                    value = str(ipaddress.ip_address(value))
                else:
                    return None
                out.setdefault((name, rtype), []).append(value)
    for (name, rtype), values in list(out.items()):   # the suite's SPF data doubles as TXT
        if rtype == "SPF" and (name, "TXT") not in out:
            out[(name, "TXT")] = list(values)
    names = {}
    for (name, rtype) in out:
        names.setdefault(name, set()).add(rtype)
    if any("CNAME" in types and len(types) > 1 for types in names.values()):
        return None
    return out


def simulated_lookup(data):
    """pyspf's DNSLookup answered as nsd + qpsmtpd_py's resolver would answer `data`."""
    def lookup(name, qtype, strict=True, timeout=None):
        name = name.lower().rstrip(".")
        if not name.endswith("." + ZONE):
            raise spf.TempError("DNS refused")
        rtype = "TXT" if qtype == "SPF" else qtype
        seen = 0
        while (name, rtype) not in data and (name, "CNAME") in data and seen < 8:
            name, seen = data[(name, "CNAME")][0], seen + 1
            if not name.endswith("." + ZONE):
                raise spf.TempError("DNS refused")
        out = []
        for value in data.get((name, rtype), []):
            if rtype == "TXT":
                value = ("".join(value).encode("utf-8"),)
            out.append(((name, qtype), value))
        return out
    return lookup


def zone_text(value):
    def esc(part):
        raw = part.encode("utf-8")
        return '"' + "".join(chr(b) if 32 <= b < 127 and b not in (34, 92) else f"\\{b:03d}"
                             for b in raw) + '"'
    return " ".join(esc(p) for p in value) if value else '""'


def main(path):
    scenarios = list(yaml.safe_load_all(open(path)))
    zone_lines, cases = [], []
    for number, scenario in enumerate(scenarios):
        suffix = f"s{number}.{ZONE}"
        data = records(scenario, suffix)
        if data is None:
            print(f"scenario {number} ({scenario['description']}): its data cannot be served")
            continue
        spf.DNSLookup = simulated_lookup(data)
        kept = 0
        for name, test in sorted(scenario["tests"].items()):
            expected = test["result"] if isinstance(test["result"], list) else [test["result"]]
            mailfrom = move(test.get("mailfrom", ""), suffix)
            helo = move(test.get("helo", ""), suffix)
            try:
                got = spf.query(test["host"], mailfrom, helo, querytime=20).check()[0]
            except Exception:                      # noqa: BLE001  a case pyspf cannot even start
                continue
            if got not in expected:
                print(f"  left out: {number} {name}: {got}, the suite says {expected}")
            else:
                cases.append([scenario["description"], name, test["host"], mailfrom, helo, expected])
                kept += 1
        if kept:
            zone_lines.append(f"; scenario {number}: {scenario['description']}")
            for (owner, rtype), values in sorted(data.items()):
                for value in values:
                    if rtype in ("TXT", "SPF"):
                        text = zone_text(value)
                    elif rtype == "MX":
                        text = f"{value[0]} {value[1] + '.' if value[1] else '.'}"
                    elif rtype in ("CNAME", "PTR"):
                        text = value + "."
                    else:
                        text = value
                    zone_lines.append(f"{owner}. {rtype} {text}")
    with open(os.path.join(HERE, "rfc7208.zone"), "w") as fh:
        fh.write("; made by t/services/rfc7208_subset.py from the RFC 7208 test suite\n")
        fh.write("\n".join(zone_lines) + "\n")
    with open(os.path.join(os.path.dirname(HERE), "rfc7208_cases.json"), "w") as fh:
        json.dump(cases, fh, indent=0)
    print(f"{len(cases)} cases, {len(zone_lines)} zone lines")


if __name__ == "__main__":
    main(sys.argv[1])
