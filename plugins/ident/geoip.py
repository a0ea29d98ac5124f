"""ident/geoip - where the client is, from MaxMind GeoIP2/GeoLite2 databases.

At connect the client's address is looked up in the databases of `db_dir`
(MaxMind's .mmdb format, read with maxminddb): GeoIP2-City.mmdb or GeoLite2-City.mmdb,
else GeoIP2-Country.mmdb or GeoLite2-Country.mmdb, and GeoLite2-ASN.mmdb (or
GeoIP2-ISP.mmdb) for the network number. The results go to connection notes for
other plugins (greylisting's `geoip` exemption, geo_blacklist_whitelist, karma):

  geoip_country       two-letter country code (ISO 3166), e.g. DE
  geoip_country_name  the country's English name
  geoip_continent     two-letter continent code, e.g. EU
  geoip_city          the city's English name (City databases)
  geoip_asn           the network's AS number (ASN database)
  geoip_distance      km from this server (with `distance`)

and a log line such as `EU, DE, Germany, Berlin, 64502, 512 km`; an address the
databases do not know logs `skip, no results`. The databases are opened on first
use in each process and again when a file changes (update them monthly with
geoipupdate; no restart needed).

Arguments:
  db_dir DIR        where the .mmdb files are (default /usr/local/share/GeoIP; Debian's
                    geoipupdate writes /var/lib/GeoIP)
  add_headers BOOL  add X-GeoIP-Country, X-GeoIP-Continent, X-GeoIP-City, X-GeoIP-ASN
                    to each message (replacing any the message brought); default true
  distance IP       this server's public address: the distance to the client is
                    computed (great circle, the earth as a sphere of radius 6378 km)
  too_far KM        karma -1 for clients farther away than this (needs distance)

A db_dir without a City or Country database, or a file that is no MaxMind database,
stops start-up naming the file. Never refuses anything.
Hooks: connect, data_post (headers).
Example:  ident/geoip db_dir /var/lib/GeoIP distance 192.0.2.25 too_far 8000

Differences from qpsmtpd: only the .mmdb format (the legacy GeoIP .dat files and
Geo::IP are gone at MaxMind too); the ASN note comes from the GeoLite2 ASN database
(qpsmtpd's GeoIP2 code had none); loopback and private addresses are looked up like
any other (a database without them gives `skip, no results`); upstream's
config.sample/add_geoip_headers is not needed.
Needs the extra `geoip` (maxminddb).
"""

from qpsmtpd_py.api import (
    DECLINED, LOGINFO, Bool, Checked, Keyword, Number, Path, Plugin, geoip, parse_ip, require_extra,
)

require_extra("maxminddb", "maxminddb", "geoip", "python3-maxminddb", "ident/geoip")


def an_ip(text):
    if parse_ip(text) is None:
        raise ValueError(f"'{text}' is not an IP address")
    return text


class Geoip(Plugin):
    arguments = (
        Keyword("db_dir", Path(), "/usr/local/share/GeoIP", "where the .mmdb databases are"),
        Keyword("add_headers", Bool(), True, "add X-GeoIP-* header fields"),
        Keyword("distance", Checked(an_ip, "an IP address", "IP"), None,
                "this server's public address, to compute the distance to clients"),
        Keyword("too_far", Number(min=0, unit="km"), None, "karma -1 for clients farther than this"),
    )

    def register(self, *args):
        db_dir = self.args["db_dir"]
        self.main_db = geoip.find(db_dir, geoip.CITY) or geoip.find(db_dir, geoip.COUNTRY)
        if self.main_db is None:
            raise ValueError(f"no GeoIP database in {db_dir} (looked for "
                             f"{', '.join(geoip.CITY + geoip.COUNTRY)})")
        self.asn_db = geoip.find(db_dir, geoip.ASN)
        for path in (self.main_db, self.asn_db):
            if path:
                geoip.check(path)
        if self.args["add_headers"]:
            self.register_hook("data_post", self.add_headers)

    def here(self):
        ip = self.args["distance"]
        return geoip.lookup(ip, self.main_db) if ip else None

    def hook_connect(self, transaction):
        conn = self.connection
        where = geoip.lookup(conn.remote_ip, self.main_db, self.asn_db)
        if not where:
            self.log(LOGINFO, "skip, no results")
            return DECLINED
        for note, value in (("geoip_country", where.country), ("geoip_country_name", where.country_name),
                            ("geoip_continent", where.continent), ("geoip_city", where.city),
                            ("geoip_asn", where.asn)):
            if value is not None:
                conn.notes[note] = value
        parts = [p for p in (where.continent, where.country, where.country_name, where.city, where.asn) if p]
        here = self.here()
        if here is not None:
            km = geoip.distance_km(here, where)
            if km is not None:
                conn.notes["geoip_distance"] = round(km)
                parts.append(f"{round(km)} km")
                if self.args["too_far"] is not None and km > self.args["too_far"]:
                    self.adjust_karma(-1)
        self.log(LOGINFO, ", ".join(str(p) for p in parts))
        return DECLINED

    def add_headers(self, transaction):
        for field in ("Country", "Continent", "City", "ASN"):
            value = self.connection.notes.get(f"geoip_{field.lower()}")
            transaction.header.delete(f"X-GeoIP-{field}")
            if value is not None:
                transaction.header.add(f"X-GeoIP-{field}", str(value))
        return DECLINED


