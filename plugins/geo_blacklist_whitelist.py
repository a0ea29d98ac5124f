"""geo_blacklist_whitelist - refuse clients by where they are (city and country).

At connect the client's address is looked up in a MaxMind City database (GeoLite2 or
GeoIP2 .mmdb) and compared with two config files, one entry a line:

  config/geo_blacklist    locations refused
  config/geo_whitelist    exceptions: a whitelisted location is never refused

An entry is `<City>.<CC>`: the city's English name (any case; the part before the
last dot) and the two-letter country code (ISO 3166), either of them `*` for any.
`*.*` in the blacklist with `*.IT` in the whitelist accepts only Italy; `Berlin.DE`
refuses Berlin; `*.CN` all of China. An address the database does not know has no
city and no country: only `*.*` matches it. Lines starting with # are comments; a
malformed line is logged with its file and line and skipped. The files are read
again when they change.

A refused client is answered at once and disconnected:
  550 Connections from <City>, <CC> are not accepted here
(reject 0: only logged; reject naughty: left to the naughty plugin; reject_type temp:
450). Relay clients and whitelisted hosts (is_immune) are never refused. When the
ident/geoip plugin ran first, its notes are used and the database is not asked again.

Arguments:
  [db] FILE              the City database (default
                         /usr/local/share/GeoIP/GeoLite2-City.mmdb); a legacy GeoIP
                         .dat file (GeoLiteCity.dat, as the original plugin used) stops
                         start-up with a note to use the .mmdb database
  reject 0|1|naughty     default 1
  reject_type WORD       perm (default), temp, disconnect, temp_disconnect
Notes: connection `geo_blacklisted` (the matching entry) when refused.
Hooks: connect.
Example:
  geo_blacklist_whitelist /var/lib/GeoIP/GeoLite2-City.mmdb
  config/geo_blacklist:  *.*
  config/geo_whitelist:  *.IT
Needs the extra `geoip` (maxminddb).
"""

from qpsmtpd_py.api import (
    DECLINED, LOGERROR, LOGINFO, REJECT, REJECT_TYPE, Path, Plugin, Positional, geoip, require_extra,
)

require_extra("maxminddb", "maxminddb", "geoip", "python3-maxminddb", "geo_blacklist_whitelist")


def parse_entries(plugin):
    def parse(lines):
        entries = []
        for line in lines:
            text = line.strip()
            city, dot, country = text.rpartition(".")
            if not dot or not city or not (country == "*" or (len(country) == 2 and country.isalpha())):
                plugin.log(LOGERROR, f"{line.origin}: '{text}' is not <City>.<CC>; skipped")
                continue
            entries.append((text, city.lower(), country.upper()))
        return entries
    return parse


class GeoBlacklistWhitelist(Plugin):
    arguments = (
        Positional("db", Path(), "/usr/local/share/GeoIP/GeoLite2-City.mmdb", "the City database",
                   keyword=True),
        REJECT, REJECT_TYPE.but(default="perm"),
    )

    def register(self, *args):
        db = self.args["db"]
        if db.lower().endswith(".dat"):
            raise ValueError(f"{db}: legacy GeoIP .dat files are not supported; use the GeoLite2 "
                             "or GeoIP2 City database (.mmdb, e.g. from geoipupdate)")
        geoip.check(db)
        self.parse = parse_entries(self)

    def location(self):
        """(city name or "", country code or "") of the client."""
        notes = self.connection.notes
        if notes.get("geoip_country"):
            return notes.get("geoip_city") or "", notes["geoip_country"].upper()
        where = geoip.lookup(self.connection.remote_ip, self.args["db"])
        return where.city or "", (where.country or "").upper()

    @staticmethod
    def match(entries, city, country):
        """The first entry matching the location, or None ("" matches only "*")."""
        for text, e_city, e_country in entries:
            if e_city in ("*", city.lower()) and e_country in ("*", country):
                return text
        return None

    def hook_connect(self, transaction):
        if self.is_immune():
            return DECLINED
        city, country = self.location()
        shown = ", ".join(p for p in (city, country) if p) or "an unknown location"
        white = self.match(self.parsed_config("geo_whitelist", self.parse), city, country)
        if white:
            self.log(LOGINFO, f"pass, {shown} whitelisted ({white})")
            return DECLINED
        black = self.match(self.parsed_config("geo_blacklist", self.parse), city, country)
        if not black:
            self.log(LOGINFO, f"pass, {shown}")
            return DECLINED
        self.connection.notes["geo_blacklisted"] = black
        return self.get_reject(f"Connections from {shown} are not accepted here", f"blacklisted ({black})")
