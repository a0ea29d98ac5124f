"""Where an IP address is, from MaxMind-format databases (GeoLite2/GeoIP2 .mmdb), for
the ident/geoip and geo_blacklist_whitelist plugins.

Databases are opened (memory-mapped, read with maxminddb) on first use in each
process and opened again when the file changes, so a monthly update needs no
restart.
"""

import math
import os

from .extras import require

CITY = ("GeoIP2-City.mmdb", "GeoLite2-City.mmdb")
COUNTRY = ("GeoIP2-Country.mmdb", "GeoLite2-Country.mmdb")
ASN = ("GeoIP2-ISP.mmdb", "GeoLite2-ASN.mmdb")

_open = {}


def find(db_dir, names):
    """The first of `names` present in db_dir, or None."""
    for name in names:
        path = os.path.join(db_dir, name)
        if os.path.isfile(path):
            return path
    return None


def reader(path):
    """An open maxminddb reader of `path` for this process (reopened after a change)."""
    maxminddb = require("maxminddb", "maxminddb", "geoip", "python3-maxminddb")
    stat = os.stat(path)
    key = (os.getpid(), path)
    entry = _open.get(key)
    if entry is None or entry[0] != (stat.st_mtime_ns, stat.st_size, stat.st_ino):
        if entry is not None:
            entry[1].close()
        entry = _open[key] = ((stat.st_mtime_ns, stat.st_size, stat.st_ino), maxminddb.open_database(path))
    return entry[1]


def check(path):
    """Open `path` now (a start-up check); ValueError naming the file when it is no
    MaxMind database."""
    try:
        db = reader(path)
        db.metadata()
    except Exception as exc:       # noqa: BLE001  maxminddb's InvalidDatabaseError is a RuntimeError
        raise ValueError(f"{path}: not a readable MaxMind database ({exc})") from None


class Location:
    """What the databases say about one address (None for what they do not know)."""

    def __init__(self, record=None, asn=None):
        record = record or {}

        def name(section):
            return ((record.get(section) or {}).get("names") or {}).get("en")
        country = record.get("country") or record.get("registered_country") or {}
        self.country = country.get("iso_code")
        self.country_name = (country.get("names") or {}).get("en")
        self.continent = (record.get("continent") or {}).get("code")
        self.city = name("city")
        location = record.get("location") or {}
        self.latitude, self.longitude = location.get("latitude"), location.get("longitude")
        self.asn = (asn or {}).get("autonomous_system_number")
        self.as_org = (asn or {}).get("autonomous_system_organization")

    def __bool__(self):
        return bool(self.country or self.asn)


def lookup(ip, city_or_country_path, asn_path=None):
    """Location of `ip` (an empty Location when the databases do not know it)."""
    record = reader(city_or_country_path).get(ip) if city_or_country_path else None
    asn = reader(asn_path).get(ip) if asn_path else None
    return Location(record, asn)


def distance_km(a, b, radius=6378.0):
    """Great-circle distance of two Locations in km (None without coordinates)."""
    if None in (a.latitude, a.longitude, b.latitude, b.longitude):
        return None
    lat1, lon1, lat2, lon2 = map(math.radians, (a.latitude, a.longitude, b.latitude, b.longitude))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * radius * math.asin(min(1.0, math.sqrt(h)))
