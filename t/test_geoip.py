"""ident/geoip and geo_blacklist_whitelist with the small MaxMind databases that
t/services makes offline (component geoip: 127.0.0.0/24 US, 127.0.0.2 DE, 127.0.0.3 CN,
2001:db8::/32 JP; ASN 64500 for 127.0.0.0/24, 64502 for 127.0.0.2)."""

import os
import shutil

import pytest

from authtools import header_values, reply
from harness import service_env
from inproc import InProcessServer, message_wire

MESSAGE = message_wire("From: a@example.test\nX-GeoIP-Country: forged\nSubject: geo\n\nhi")


@pytest.fixture
def geo_dir():
    return service_env("QPT_GEOIP_DIR")


@pytest.fixture
def server(session_server):
    def make(*lines, files=None):
        return session_server(*lines, files={"loglevel": "6", **(files or {})})
    return make


def session(srv, ip, data=True):
    script = ["EHLO client.example.test", "MAIL FROM:<a@example.test>", "RCPT TO:<u@example.test>"]
    if data:
        script += ["DATA", MESSAGE]
    return srv.talk(*script, "QUIT", remote_ip=ip)


def geo_notes(d):
    return {k: v for k, v in d.connection.notes.items() if k.startswith("geoip_")}


# -- ident/geoip ----------------------------------------------------------------------------
def test_notes_headers_and_log_line(server, geo_dir):
    d = session(server(f"ident/geoip db_dir {geo_dir}"), "127.0.0.2")
    assert geo_notes(d) == {"geoip_country": "DE", "geoip_country_name": "Germany",
                            "geoip_continent": "EU", "geoip_city": "Germany City", "geoip_asn": 64502}
    (msg,) = d.messages
    assert header_values(msg, "X-GeoIP-Country") == ["DE"]             # the forged one is gone
    assert header_values(msg, "X-GeoIP-Continent") == ["EU"]
    assert header_values(msg, "X-GeoIP-City") == ["Germany City"]
    assert header_values(msg, "X-GeoIP-ASN") == ["64502"]
    assert "EU, DE, Germany, Germany City, 64502" in d.log


def test_ipv6_and_unknown_addresses(server, geo_dir):
    srv = server(f"ident/geoip db_dir {geo_dir} add_headers false")
    d = session(srv, "2001:db8::5")
    assert geo_notes(d)["geoip_country"] == "JP" and "geoip_asn" not in geo_notes(d)
    assert header_values(d.messages[0], "X-GeoIP-Country") == ["forged"]   # add_headers false
    d = session(srv, "192.0.2.10")
    assert geo_notes(d) == {} and "skip, no results" in d.log


@pytest.mark.parametrize("too_far, karma", [(5000, -1), (9000, 0)])
def test_distance_and_too_far(server, geo_dir, too_far, karma):
    d = session(server(f"ident/geoip db_dir {geo_dir} distance 127.0.0.1 too_far {too_far}"),
                "127.0.0.2", data=False)
    km = d.connection.notes["geoip_distance"]
    assert 7600 < km < 8000, km          # Kansas to central Germany, about 7,800 km
    assert d.connection.notes.get("karma", 0) == karma
    assert f"{km} km" in d.log


def test_a_country_database_alone_and_an_update_without_restart(server, geo_dir, tmp_path):
    only_country = tmp_path / "country"
    only_country.mkdir()
    shutil.copy(os.path.join(geo_dir, "GeoLite2-Country.mmdb"), only_country)
    d = session(server(f"ident/geoip db_dir {only_country}"), "127.0.0.3", data=False)
    assert geo_notes(d)["geoip_country"] == "CN"
    # a City file that knows nothing yet (an ASN database), then the real one arrives
    db_dir = tmp_path / "geo"
    db_dir.mkdir()
    shutil.copy(os.path.join(geo_dir, "GeoLite2-ASN.mmdb"), db_dir / "GeoLite2-City.mmdb")
    srv = server(f"ident/geoip db_dir {db_dir}")
    d = session(srv, "127.0.0.3", data=False)
    assert geo_notes(d) == {} and "skip, no results" in d.log
    shutil.copy(os.path.join(geo_dir, "GeoLite2-City.mmdb"), db_dir / "new.mmdb")
    os.replace(db_dir / "new.mmdb", db_dir / "GeoLite2-City.mmdb")     # as geoipupdate does
    assert geo_notes(session(srv, "127.0.0.3", data=False))["geoip_city"] == "China City"


def test_a_missing_or_broken_database_stops_start_up(mail_config, tmp_path):
    with pytest.raises(Exception, match=r"no GeoIP database in .*/nowhere"):
        InProcessServer(mail_config(f"ident/geoip db_dir {tmp_path}/nowhere"))
    (tmp_path / "GeoLite2-City.mmdb").write_text("not a database")
    with pytest.raises(Exception, match=r"GeoLite2-City.mmdb: not a readable MaxMind database"):
        InProcessServer(mail_config(f"ident/geoip db_dir {tmp_path}"))
    with pytest.raises(Exception, match=r"'nowhere' is not an IP address"):
        InProcessServer(mail_config(f"ident/geoip db_dir {tmp_path} distance nowhere"))


# -- geo_blacklist_whitelist ---------------------------------------------------------------
def bw(server, geo_dir, black="", white="", extra="", before=()):
    return server(*before, f"geo_blacklist_whitelist {geo_dir}/GeoLite2-City.mmdb {extra}".strip(),
                  files={"geo_blacklist": black, "geo_whitelist": white})


def test_only_one_country_accepted(server, geo_dir):
    srv = bw(server, geo_dir, black="*.*", white="# only Germany\n*.DE")
    assert session(srv, "127.0.0.2", data=False).codes[:3] == [220, 250, 250]
    d = session(srv, "127.0.0.3", data=False)
    assert reply(d, 0) == (550, "Connections from China City, CN are not accepted here")
    assert len(d.replies) == 1                                      # disconnected at once
    assert d.connection.notes["geo_blacklisted"] == "*.*"
    d = session(srv, "192.0.2.10", data=False)
    assert reply(d, 0) == (550, "Connections from an unknown location are not accepted here")


def test_ipv6_clients(server, geo_dir):
    srv = bw(server, geo_dir, black="*.JP")
    assert reply(session(srv, "2001:db8::5", data=False), 0) == (
        550, "Connections from Japan City, JP are not accepted here")


def test_city_entries_any_case_and_bad_lines(server, geo_dir):
    srv = bw(server, geo_dir, black="china city.cn\nnot-an-entry\nBerlin.GER")
    d = session(srv, "127.0.0.3", data=False)
    assert reply(d, 0)[0] == 550
    assert "geo_blacklist:2: 'not-an-entry' is not <City>.<CC>; skipped" in d.log
    assert "geo_blacklist:3: 'Berlin.GER' is not <City>.<CC>; skipped" in d.log
    assert session(srv, "127.0.0.2", data=False).codes[:3] == [220, 250, 250]
    assert session(srv, "192.0.2.10", data=False).codes[:2] == [220, 250]   # unknown: only *.*


def test_reject_policies_and_immune_clients(server, geo_dir):
    d = session(bw(server, geo_dir, black="*.CN", extra="reject 0"), "127.0.0.3", data=False)
    assert d.codes[:2] == [220, 250] and "fail, tolerated" in d.log
    d = session(bw(server, geo_dir, black="*.CN", extra="reject_type temp"), "127.0.0.3", data=False)
    assert reply(d, 0)[0] == 450
    srv = bw(server, geo_dir, black="*.CN", before=("t_note whitelisthost 1",))
    assert session(srv, "127.0.0.3", data=False).codes[:2] == [220, 250]


def test_uses_the_notes_of_ident_geoip(server, geo_dir):
    srv = bw(server, geo_dir, black="*.FR", before=("t_note geoip_country fr geoip_city Paris",))
    d = session(srv, "127.0.0.2", data=False)                        # DE in the database
    assert reply(d, 0) == (550, "Connections from Paris, FR are not accepted here")


def test_legacy_dat_files_stop_start_up(mail_config):
    with pytest.raises(Exception, match=r"legacy GeoIP .dat files are not supported"):
        InProcessServer(mail_config("geo_blacklist_whitelist /usr/share/GeoIP/GeoLiteCity.dat"))
