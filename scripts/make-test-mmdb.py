#!/usr/bin/env python3
"""Writes the small MaxMind DB files the geoip tests use (testdata/geoip/).

The records follow the GeoIP2-City and GeoLite2-ASN layouts, with numbers
typed as MaxMind types them (uint32 geoname ids and AS numbers, uint16
accuracy radius, double coordinates), so the `maxminddb` crate decodes them
as `geoip2::City` / `geoip2::Asn` exactly as it decodes the real databases.
The outputs are committed; run this only to change them:

    pip install mmdb-writer==0.2.7
    python3 scripts/make-test-mmdb.py            # writes testdata/geoip/*.mmdb

GeoIP2-City-Test-updated.mmdb is the "next release" the reload tests swap in.
GeoIP2-City-Test-ipv4.mmdb holds the IPv4 records alone in an IPv4-only tree
(`ip_version` 4), as in-house and some vendors' databases are.

The build time is fixed so that re-running produces the same bytes.
"""

import os
import sys

from mmdb_writer import MMDBWriter, MmdbF64, MmdbU16, MmdbU32
from netaddr import IPSet

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "testdata", "geoip")
BUILD_EPOCH = 1767225600  # 2026-01-01T00:00:00Z


class FixedTimeWriter(MMDBWriter):
    def _build_meta(self):
        meta = super()._build_meta()
        meta["build_epoch"] = BUILD_EPOCH
        return meta


def names(en, **others):
    out = {"en": en}
    out.update({k.replace("_", "-"): v for k, v in others.items()})
    return out


def continent(code, geoname_id, en):
    return {"code": code, "geoname_id": MmdbU32(geoname_id), "names": names(en)}


def country(iso, geoname_id, en, eu=None, **others):
    c = {"iso_code": iso, "geoname_id": MmdbU32(geoname_id), "names": names(en, **others)}
    if eu is not None:
        c["is_in_european_union"] = eu
    return c


def location(lat, lon, radius, tz):
    return {
        "latitude": MmdbF64(lat),
        "longitude": MmdbF64(lon),
        "accuracy_radius": MmdbU16(radius),
        "time_zone": tz,
    }


EUROPE = continent("EU", 6255148, "Europe")
ASIA = continent("AS", 6255147, "Asia")
GB = country("GB", 2635167, "United Kingdom", de="Vereinigtes Königreich")
SE = country("SE", 2661886, "Sweden", eu=True, de="Schweden")
CZ = country("CZ", 3077311, "Czechia", eu=True, de="Tschechien")
JP = country("JP", 1861060, "Japan", ja="日本")
BT = country("BT", 1252634, "Bhutan")

CITY_RECORDS = [
    # Full city records, IPv4.
    ("81.2.69.0/24", {
        "city": {"geoname_id": MmdbU32(2643743), "names": names("London", de="London")},
        "continent": EUROPE,
        "country": GB,
        "registered_country": GB,
        "location": location(51.5142, -0.0931, 10, "Europe/London"),
        "postal": {"code": "EC2V"},
        "subdivisions": [
            {"geoname_id": MmdbU32(6269131), "iso_code": "ENG", "names": names("England")},
            {"geoname_id": MmdbU32(2648110), "iso_code": "GLA", "names": names("Greater London")},
        ],
    }),
    # Non-ASCII names.
    ("89.160.20.0/24", {
        "city": {"geoname_id": MmdbU32(2694762), "names": names("Linköping", de="Linköping")},
        "continent": EUROPE,
        "country": SE,
        "registered_country": SE,
        "location": location(58.4167, 15.6167, 76, "Europe/Stockholm"),
        "postal": {"code": "589 41"},
        "subdivisions": [
            {"geoname_id": MmdbU32(2685867), "iso_code": "E", "names": names("Östergötland County")},
        ],
    }),
    # Full city record, IPv6.
    ("2a02:598::/32", {
        "city": {"geoname_id": MmdbU32(3067696), "names": names("Prague", de="Prag")},
        "continent": EUROPE,
        "country": CZ,
        "registered_country": CZ,
        "location": location(50.0880, 14.4208, 20, "Europe/Prague"),
        "postal": {"code": "110 00"},
        "subdivisions": [
            {"geoname_id": MmdbU32(3067695), "iso_code": "10", "names": names("Prague")},
        ],
    }),
    # Country but no city, IPv6 and IPv4.
    ("2001:218::/32", {
        "continent": ASIA,
        "country": JP,
        "registered_country": JP,
        "location": {"latitude": MmdbF64(35.69), "longitude": MmdbF64(139.69),
                     "accuracy_radius": MmdbU16(100), "time_zone": "Asia/Tokyo"},
    }),
    ("67.43.156.0/24", {
        "continent": ASIA,
        "country": BT,
        "registered_country": BT,
    }),
    # A record no real database has: private space. The transform must skip
    # private addresses before looking them up, and this lets a test tell
    # "skipped" from "not found".
    ("10.0.0.0/8", {"country": country("AQ", 6697173, "Antarctica")}),
]

# The next release of the City database, for the reload tests: it moves
# 81.2.69.0/24 from London to Manchester.
MANCHESTER = {
    "city": {"geoname_id": MmdbU32(2643123), "names": names("Manchester")},
    "continent": EUROPE,
    "country": GB,
    "registered_country": GB,
    "location": location(53.4809, -2.2374, 20, "Europe/London"),
    "subdivisions": [
        {"geoname_id": MmdbU32(6269131), "iso_code": "ENG", "names": names("England")},
    ],
}
UPDATED_CITY_RECORDS = [(c, MANCHESTER if c == "81.2.69.0/24" else r) for c, r in CITY_RECORDS]

ASN_RECORDS = [
    ("81.2.69.0/24", 20712, "Andrews & Arnold Ltd"),
    ("89.160.0.0/17", 29518, "Bredband2 AB"),
    ("2a02:598::/32", 43037, "Seznam.cz, a.s."),
]


def write_city(path, records=CITY_RECORDS):
    w = FixedTimeWriter(
        ip_version=6,
        ipv4_compatible=True,
        database_type="GeoIP2-City",
        languages=["de", "en", "ja"],
        description="rum-pipeline test City database (not real data)",
    )
    for cidr, record in records:
        w.insert_network(IPSet([cidr]), record)
    w.to_db_file(path)


def write_city_ipv4(path):
    w = FixedTimeWriter(
        ip_version=4,
        database_type="GeoIP2-City",
        languages=["de", "en", "ja"],
        description="rum-pipeline test IPv4-only City database (not real data)",
    )
    for cidr, record in CITY_RECORDS:
        if ":" not in cidr:
            w.insert_network(IPSet([cidr]), record)
    w.to_db_file(path)


def write_asn(path):
    w = FixedTimeWriter(
        ip_version=6,
        ipv4_compatible=True,
        database_type="GeoLite2-ASN",
        languages=["en"],
        description="rum-pipeline test ASN database (not real data)",
    )
    for cidr, number, org in ASN_RECORDS:
        w.insert_network(IPSet([cidr]), {
            "autonomous_system_number": MmdbU32(number),
            "autonomous_system_organization": org,
        })
    w.to_db_file(path)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else OUT
    os.makedirs(out, exist_ok=True)
    write_city(os.path.join(out, "GeoIP2-City-Test.mmdb"))
    write_city(os.path.join(out, "GeoIP2-City-Test-updated.mmdb"), UPDATED_CITY_RECORDS)
    write_city_ipv4(os.path.join(out, "GeoIP2-City-Test-ipv4.mmdb"))
    write_asn(os.path.join(out, "GeoLite2-ASN-Test.mmdb"))
    print(f"wrote GeoIP2-City-Test.mmdb, GeoIP2-City-Test-updated.mmdb, GeoIP2-City-Test-ipv4.mmdb, GeoLite2-ASN-Test.mmdb in {out}")


if __name__ == "__main__":
    main()
