//! The databases and what is read from them: opening and checking a MaxMind
//! file, looking an address up through a cache of decoded records keyed by
//! their offset, and a record as the ECS `client.geo` / `client.as` objects.

use crate::event::FieldValue;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use maxminddb::{geoip2, Reader};
use quick_cache::unsync::Cache;
use serde_json::{Map, Value};

use crate::reload::Load;

/// The bytes of a database: mapped, or read into memory.
pub(super) enum Source {
    Mapped(maxminddb::Mmap),
    Read(Vec<u8>),
}

impl AsRef<[u8]> for Source {
    fn as_ref(&self) -> &[u8] {
        match self {
            Source::Mapped(m) => m,
            Source::Read(v) => v,
        }
    }
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DbKind {
    City,
    Asn,
}

pub(super) struct Database {
    reader: Reader<Source>,
}

impl Database {
    /// Opens and checks one database; every error names the file.
    fn open(path: &Path, kind: DbKind, memory_map: bool) -> anyhow::Result<Self> {
        std::fs::metadata(path)
            .with_context(|| format!("cannot read GeoIP database {}", path.display()))?;
        let source = if memory_map {
            let file = std::fs::File::open(path)
                .with_context(|| format!("cannot open GeoIP database {}", path.display()))?;
            // SAFETY: the mapping is only read. The file must not be changed in
            // place while mapped; updates replace it (rename), which leaves
            // this mapping on the old inode. `memory_map = false` avoids the
            // mapping for setups that cannot promise that; both are documented.
            let map = unsafe { maxminddb::Mmap::map(&file) }
                .with_context(|| format!("cannot memory-map GeoIP database {}", path.display()))?;
            // Lookups jump around the search tree: reading ahead of a
            // touched page only fills memory. From a cold page cache the
            // bench's 64 addresses mapped 9 MiB of the 60 MiB GeoLite2-City
            // file without this, 1.1 MiB with it. (Pages another reader
            // already cached in large folios are mapped whole either way.)
            // Advice only: a kernel that refuses it changes nothing.
            let _ = map.advise(memmap2::Advice::Random);
            Source::Mapped(map)
        } else {
            Source::Read(
                std::fs::read(path)
                    .with_context(|| format!("cannot read GeoIP database {}", path.display()))?,
            )
        };
        let reader = Reader::from_source(source)
            .with_context(|| format!("{} is not a valid MaxMind DB file", path.display()))?;
        let db_type = reader.metadata().database_type.clone();
        let fits = match kind {
            DbKind::City => ["City", "Country", "Enterprise"]
                .iter()
                .any(|t| db_type.contains(t)),
            DbKind::Asn => ["ASN", "ISP"].iter().any(|t| db_type.contains(t)),
        };
        if !fits {
            let wanted = match kind {
                DbKind::City => "a City (or Country) database for `database`",
                DbKind::Asn => "an ASN database for `asn_database`",
            };
            anyhow::bail!(
                "{} is a `{db_type}` database; expected {wanted}",
                path.display()
            );
        }
        // The metadata can be fine while the tree or data is not: decode a
        // few records so a damaged file fails here, not on traffic. An
        // IPv4-only tree (`ip_version` 4) refuses IPv6 lookups by design;
        // IPv6 clients are then not found.
        let ipv4_only = reader.metadata().ip_version == 4;
        for probe in ["1.1.1.1", "8.8.8.8", "81.2.69.142", "2001:4860::1"] {
            let ip: IpAddr = probe.parse().expect("literal address");
            if ipv4_only && ip.is_ipv6() {
                continue;
            }
            let found = reader
                .lookup(ip)
                .with_context(|| format!("{} is damaged (lookup of {probe})", path.display()))?;
            let decoded = match kind {
                DbKind::City => found.decode::<geoip2::City>().map(|_| ()),
                DbKind::Asn => found.decode::<geoip2::Asn>().map(|_| ()),
            };
            decoded
                .with_context(|| format!("{} is damaged (record of {probe})", path.display()))?;
        }
        Ok(Self { reader })
    }
}

/// The City database and the optional ASN database, swapped as one.
pub(super) struct Databases {
    pub(super) city: Database,
    pub(super) asn: Option<Database>,
}

/// The files of one `geoip` transform, loaded (and reloaded) as one `Databases`.
pub(super) struct DatabaseFiles {
    pub(super) city: PathBuf,
    pub(super) asn: Option<PathBuf>,
    pub(super) memory_map: bool,
}

impl Load for DatabaseFiles {
    type Value = Databases;
    const WHAT: &'static str = "GeoIP databases";

    fn paths(&self) -> Vec<PathBuf> {
        std::iter::once(self.city.clone())
            .chain(self.asn.clone())
            .collect()
    }

    fn load(&self) -> anyhow::Result<Databases> {
        let city = Database::open(&self.city, DbKind::City, self.memory_map)?;
        let asn = match &self.asn {
            Some(path) => Some(Database::open(path, DbKind::Asn, self.memory_map)?),
            None => None,
        };
        Ok(Databases { city, asn })
    }
}
/// Decoded records of one database by data-section offset; `None` when
/// `cache_size = 0`.
pub(super) type Records = Option<Cache<usize, Option<FieldValue>>>;

/// Looks `ip` up and returns its record's fields, decoding each record once:
/// many addresses share a record (every address of a city's networks), so
/// the cache, keyed by the record's offset in the file, holds the working set.
pub(super) fn lookup(
    db: &Database,
    ip: IpAddr,
    cache: &mut Records,
    decode: impl FnOnce(&maxminddb::LookupResult<'_, Source>) -> Option<Value>,
) -> Option<FieldValue> {
    let found = db.reader.lookup(ip).ok()?;
    let offset = found.offset()?;
    if let Some(fields) = cache.as_ref().and_then(|c| c.get(&offset)) {
        return fields.clone();
    }
    let fields = decode(&found).map(FieldValue::shared);
    if let Some(cache) = cache {
        cache.insert(offset, fields.clone());
    }
    fields
}

pub use crate::privacy::truncate;

/// Addresses a geo database can say something about: not private, loopback,
/// link-local, shared (CGNAT), documentation, multicast or unspecified.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || (a == 100 && (64..128).contains(&b))
                || a == 0
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || (first == 0x2001 && v6.segments()[1] == 0x0db8)) // documentation
        }
    }
}

/// The configured language of `names` maps.
#[derive(Debug, Clone, Copy)]
pub(super) enum Locale {
    En,
    De,
    Es,
    Fr,
    Ja,
    PtBr,
    Ru,
    ZhCn,
}

impl Locale {
    pub(super) fn parse(name: &str) -> Self {
        match name {
            "de" => Locale::De,
            "es" => Locale::Es,
            "fr" => Locale::Fr,
            "ja" => Locale::Ja,
            "pt-BR" => Locale::PtBr,
            "ru" => Locale::Ru,
            "zh-CN" => Locale::ZhCn,
            _ => Locale::En,
        }
    }

    fn pick<'a>(self, names: &geoip2::Names<'a>) -> Option<&'a str> {
        let wanted = match self {
            Locale::En => names.english,
            Locale::De => names.german,
            Locale::Es => names.spanish,
            Locale::Fr => names.french,
            Locale::Ja => names.japanese,
            Locale::PtBr => names.brazilian_portuguese,
            Locale::Ru => names.russian,
            Locale::ZhCn => names.simplified_chinese,
        };
        wanted.or(names.english)
    }
}

/// Decoded records by data-section offset, one `quick_cache` per database
/// bounded by `cache_size` entries. Emptied on reload, since offsets mean
/// nothing in another file.
pub(super) struct RecordCache {
    pub(super) city: Records,
    pub(super) asn: Records,
}

impl RecordCache {
    pub(super) fn new(capacity: usize) -> Self {
        let records = || (capacity > 0).then(|| Cache::new(capacity));
        Self {
            city: records(),
            asn: records(),
        }
    }

    pub(super) fn clear(&mut self) {
        for records in [&mut self.city, &mut self.asn].into_iter().flatten() {
            records.clear();
        }
    }
}

/// A City record as the `client.geo` object.
pub(super) fn city_fields(city: &geoip2::City<'_>, locale: Locale) -> Option<Value> {
    let mut geo = Map::new();
    let mut put = |key: &str, value: Option<&str>| {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            geo.insert(key.to_owned(), Value::String(v.to_owned()));
        }
    };
    put("continent_code", city.continent.code);
    put("country_iso_code", city.country.iso_code);
    put("country_name", locale.pick(&city.country.names));
    if let Some(region) = city.subdivisions.first() {
        // ECS wants the ISO 3166-2 code whole: `GB-ENG`, not `ENG`.
        let iso = match (city.country.iso_code, region.iso_code) {
            (Some(country), Some(sub)) => Some(format!("{country}-{sub}")),
            (None, Some(sub)) => Some(sub.to_owned()),
            _ => None,
        };
        put("region_iso_code", iso.as_deref());
        put("region_name", locale.pick(&region.names));
    }
    put("city_name", locale.pick(&city.city.names));
    put("postal_code", city.postal.code);
    put("timezone", city.location.time_zone);
    if let (Some(lat), Some(lon)) = (city.location.latitude, city.location.longitude) {
        if lat.is_finite() && lon.is_finite() {
            geo.insert(
                "location".to_owned(),
                serde_json::json!({"lat": lat, "lon": lon}),
            );
        }
    }
    (!geo.is_empty()).then_some(Value::Object(geo))
}

/// An ASN record as the `client.as` object.
pub(super) fn asn_fields(asn: &geoip2::Asn<'_>) -> Option<Value> {
    let mut out = Map::new();
    if let Some(number) = asn.autonomous_system_number {
        out.insert("number".to_owned(), Value::from(number));
    }
    if let Some(org) = asn.autonomous_system_organization.filter(|o| !o.is_empty()) {
        out.insert("organization".to_owned(), serde_json::json!({"name": org}));
    }
    (!out.is_empty()).then_some(Value::Object(out))
}
