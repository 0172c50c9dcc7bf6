//! Transform `geoip`: `client.ip` → `client.geo.*` from a GeoIP2/GeoLite2
//! City database and, optionally, `client.as.*` from an ASN database; then
//! the address is anonymized (truncated to /24 and /48 by default, or
//! dropped). Private, loopback and link-local addresses are not looked up.
//!
//! The databases are memory-mapped and shared behind an `Arc`; a background
//! task reopens them when a file changes or on SIGHUP and publishes the new
//! pair, which the transform picks up between two batches, so no event is
//! held back or dropped by a reload.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use maxminddb::{geoip2, Reader};
use rustc_hash::FxHashMap;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{FunctionTransform, TransformContext};
use crate::config::CheckConfig;
use crate::event::{Batch, Event};
use crate::schema;
use crate::telemetry::Counter;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoipConfig {
    /// GeoIP2 or GeoLite2 City database (`.mmdb`). Country databases work too
    /// (no city, region or postal code then).
    pub database: PathBuf,
    /// GeoLite2/GeoIP2 ASN database for `client.as.number` and
    /// `client.as.organization.name`. None by default.
    #[serde(default)]
    pub asn_database: Option<PathBuf>,
    /// Language of `country_name`, `region_name` and `city_name`: one of the
    /// languages GeoIP2 ships (`en`, `de`, `es`, `fr`, `ja`, `pt-BR`, `ru`,
    /// `zh-CN`). English is used where a name is missing in that language.
    #[serde(default = "default_locale")]
    pub locale: String,
    /// What happens to `client.ip` after the lookup: `true` (the default)
    /// keeps only the network part (`ipv4_prefix`, `ipv6_prefix`), `"drop"`
    /// removes the field, `false` keeps the full address.
    #[serde(default)]
    pub anonymize_ip: AnonymizeIp,
    /// Bits of an IPv4 address kept by `anonymize_ip = true`.
    #[serde(default = "default_ipv4_prefix")]
    pub ipv4_prefix: u8,
    /// Bits of an IPv6 address kept by `anonymize_ip = true`.
    #[serde(default = "default_ipv6_prefix")]
    pub ipv6_prefix: u8,
    /// Seconds between checks of the database files for a new version
    /// (modification time, size, inode). 0 checks only on SIGHUP.
    #[serde(default = "default_reload_interval")]
    pub reload_interval_secs: u64,
    /// Memory-map the databases (the default). Replace a mapped file by
    /// renaming a new one over it, as `geoipupdate` does; writing into the
    /// mapped file in place can crash the process. `false` reads the files
    /// into memory instead, which is safe against in-place writes and costs
    /// their size in RAM.
    #[serde(default = "default_true")]
    pub memory_map: bool,
    /// Decoded database records kept, so the addresses of one network cost a
    /// tree walk and a map lookup, not a decode. 0 turns the cache off.
    #[serde(default = "default_cache_size")]
    pub cache_size: usize,
}

fn default_locale() -> String {
    "en".to_owned()
}
fn default_ipv4_prefix() -> u8 {
    24
}
fn default_ipv6_prefix() -> u8 {
    48
}
fn default_reload_interval() -> u64 {
    60
}
fn default_true() -> bool {
    true
}
fn default_cache_size() -> usize {
    4096
}

/// The languages of GeoIP2 `names` maps.
pub const LOCALES: &[&str] = &["en", "de", "es", "fr", "ja", "pt-BR", "ru", "zh-CN"];

impl GeoipConfig {
    /// A config with every default, for `database`.
    pub fn new(database: impl Into<PathBuf>) -> Self {
        Self {
            database: database.into(),
            asn_database: None,
            locale: default_locale(),
            anonymize_ip: AnonymizeIp::default(),
            ipv4_prefix: default_ipv4_prefix(),
            ipv6_prefix: default_ipv6_prefix(),
            reload_interval_secs: default_reload_interval(),
            memory_map: true,
            cache_size: default_cache_size(),
        }
    }
}

impl CheckConfig for GeoipConfig {
    fn check(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if !LOCALES.contains(&self.locale.as_str()) {
            problems.push((
                "locale",
                format!("`{}` is not a GeoIP2 language (one of: {})", self.locale, LOCALES.join(", ")),
            ));
        }
        if self.ipv4_prefix > 32 {
            problems.push(("ipv4_prefix", format!("{} is more than 32 bits", self.ipv4_prefix)));
        }
        if self.ipv6_prefix > 128 {
            problems.push(("ipv6_prefix", format!("{} is more than 128 bits", self.ipv6_prefix)));
        }
        problems
    }
}

/// `anonymize_ip = true | false | "truncate" | "drop" | "off"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AnonymizeIp {
    Off,
    #[default]
    Truncate,
    Drop,
}

impl<'de> Deserialize<'de> for AnonymizeIp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = AnonymizeIp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false, \"truncate\", \"drop\" or \"off\"")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<AnonymizeIp, E> {
                Ok(if v { AnonymizeIp::Truncate } else { AnonymizeIp::Off })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<AnonymizeIp, E> {
                match v {
                    "truncate" => Ok(AnonymizeIp::Truncate),
                    "drop" => Ok(AnonymizeIp::Drop),
                    "off" => Ok(AnonymizeIp::Off),
                    other => Err(E::invalid_value(de::Unexpected::Str(other), &self)),
                }
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// The bytes of a database: mapped, or read into memory.
enum Source {
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

/// What identifies one version of a file on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl FileStamp {
    fn of(path: &Path) -> std::io::Result<Self> {
        let meta = std::fs::metadata(path)?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&meta);
        #[cfg(not(unix))]
        let inode = 0;
        Ok(Self {
            modified: meta.modified().ok(),
            len: meta.len(),
            inode,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DbKind {
    City,
    Asn,
}

struct Database {
    reader: Reader<Source>,
    stamp: FileStamp,
}

impl Database {
    /// Opens and checks one database; every error names the file.
    fn open(path: &Path, kind: DbKind, memory_map: bool) -> anyhow::Result<Self> {
        let stamp = FileStamp::of(path).with_context(|| format!("cannot read GeoIP database {}", path.display()))?;
        let source = if memory_map {
            let file = std::fs::File::open(path)
                .with_context(|| format!("cannot open GeoIP database {}", path.display()))?;
            // SAFETY: the mapping is only read. The file must not be changed in
            // place while mapped; updates replace it (rename), which leaves
            // this mapping on the old inode. `memory_map = false` avoids the
            // mapping for setups that cannot promise that; both are documented.
            let map = unsafe { maxminddb::Mmap::map(&file) }
                .with_context(|| format!("cannot memory-map GeoIP database {}", path.display()))?;
            Source::Mapped(map)
        } else {
            Source::Read(std::fs::read(path).with_context(|| format!("cannot read GeoIP database {}", path.display()))?)
        };
        let reader = Reader::from_source(source)
            .with_context(|| format!("{} is not a valid MaxMind DB file", path.display()))?;
        let db_type = reader.metadata().database_type.clone();
        let fits = match kind {
            DbKind::City => ["City", "Country", "Enterprise"].iter().any(|t| db_type.contains(t)),
            DbKind::Asn => ["ASN", "ISP"].iter().any(|t| db_type.contains(t)),
        };
        if !fits {
            let wanted = match kind {
                DbKind::City => "a City (or Country) database for `database`",
                DbKind::Asn => "an ASN database for `asn_database`",
            };
            anyhow::bail!("{} is a `{db_type}` database; expected {wanted}", path.display());
        }
        // The metadata can be fine while the tree or data is not: decode a
        // few records so a damaged file fails here, not on traffic.
        for probe in ["1.1.1.1", "8.8.8.8", "81.2.69.142", "2001:4860::1"] {
            let ip: IpAddr = probe.parse().expect("literal address");
            let found = reader
                .lookup(ip)
                .with_context(|| format!("{} is damaged (lookup of {probe})", path.display()))?;
            let decoded = match kind {
                DbKind::City => found.decode::<geoip2::City>().map(|_| ()),
                DbKind::Asn => found.decode::<geoip2::Asn>().map(|_| ()),
            };
            decoded.with_context(|| format!("{} is damaged (record of {probe})", path.display()))?;
        }
        Ok(Self { reader, stamp })
    }
}

/// The City database and the optional ASN database, swapped as one.
struct Databases {
    city: Database,
    asn: Option<Database>,
    /// Bumped on every reload, so caches know their offsets went stale.
    generation: u64,
}

/// Where the reloader publishes a new `Databases` for the transform.
struct Published {
    current: Mutex<Arc<Databases>>,
    generation: AtomicU64,
}

/// What `reload` did.
#[derive(Debug, PartialEq, Eq)]
pub enum ReloadOutcome {
    Unchanged,
    Reloaded,
    Failed,
}

/// Reopens the databases and publishes them, held by the reload task.
struct Reloader {
    id: String,
    city_path: PathBuf,
    asn_path: Option<PathBuf>,
    memory_map: bool,
    published: Weak<Published>,
    /// The stamps of the last version that failed to open: not retried (nor
    /// logged again) until the files change once more.
    failed: Option<(FileStamp, Option<FileStamp>)>,
    reloads: Counter,
    reload_errors: Counter,
}

impl Reloader {
    /// `force` (SIGHUP) reopens even when the files look unchanged. Returns
    /// `None` when the transform is gone.
    fn reload(&mut self, force: bool) -> Option<ReloadOutcome> {
        let published = self.published.upgrade()?;
        let current = published.current.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let stamps = (
            FileStamp::of(&self.city_path).ok(),
            self.asn_path.as_deref().map(|p| FileStamp::of(p).ok()),
        );
        let unchanged = stamps.0 == Some(current.city.stamp)
            && stamps.1.map(|s| s) == current.asn.as_ref().map(|a| Some(a.stamp));
        if !force && unchanged {
            return Some(ReloadOutcome::Unchanged);
        }
        let key = stamps.0.map(|c| (c, stamps.1.flatten()));
        if !force && key.is_some() && key == self.failed {
            return Some(ReloadOutcome::Unchanged);
        }
        let opened = Database::open(&self.city_path, DbKind::City, self.memory_map).and_then(|city| {
            let asn = match &self.asn_path {
                Some(path) => Some(Database::open(path, DbKind::Asn, self.memory_map)?),
                None => None,
            };
            Ok((city, asn))
        });
        match opened {
            Ok((city, asn)) => {
                let generation = current.generation + 1;
                let fresh = Arc::new(Databases { city, asn, generation });
                *published.current.lock().unwrap_or_else(|e| e.into_inner()) = fresh;
                published.generation.store(generation, Ordering::Release);
                self.failed = None;
                self.reloads.inc();
                tracing::info!(component = %self.id, "GeoIP databases reloaded from {}", self.city_path.display());
                Some(ReloadOutcome::Reloaded)
            }
            Err(e) => {
                if key != self.failed || force {
                    tracing::error!(component = %self.id, "GeoIP reload failed, keeping the loaded databases: {e:#}");
                }
                self.failed = key;
                self.reload_errors.inc();
                Some(ReloadOutcome::Failed)
            }
        }
    }

    /// Polls the files every `interval` (if any) and reloads on SIGHUP,
    /// until the transform is dropped.
    async fn run(mut self, interval: Option<Duration>) {
        #[cfg(unix)]
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(|e| tracing::warn!(component = %self.id, "SIGHUP reloads are off: {e}"))
            .ok();
        let mut ticker = interval.map(|every| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        // The transform going away is noticed at the latest after this long.
        let mut liveness = tokio::time::interval(Duration::from_secs(5));
        loop {
            let force = tokio::select! {
                _ = async { ticker.as_mut().expect("guarded").tick().await }, if ticker.is_some() => false,
                _ = hangup_recv(&mut hangup) => true,
                _ = liveness.tick() => {
                    if self.published.strong_count() == 0 { return; }
                    continue;
                }
            };
            let reloader = std::mem::replace(&mut self, Reloader::placeholder());
            let (back, outcome) = tokio::task::spawn_blocking(move || {
                let mut reloader = reloader;
                let outcome = reloader.reload(force);
                (reloader, outcome)
            })
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
            self = back;
            if outcome.is_none() {
                return;
            }
        }
    }

    fn placeholder() -> Self {
        Self {
            id: String::new(),
            city_path: PathBuf::new(),
            asn_path: None,
            memory_map: false,
            published: Weak::new(),
            failed: None,
            reloads: Counter::default(),
            reload_errors: Counter::default(),
        }
    }
}

#[cfg(unix)]
async fn hangup_recv(signal: &mut Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn hangup_recv(_: &mut Option<()>) {
    std::future::pending().await
}

impl GeoipConfig {
    pub fn build(&self, cx: &TransformContext) -> anyhow::Result<GeoipTransform> {
        let city = Database::open(&self.database, DbKind::City, self.memory_map)?;
        let asn = match &self.asn_database {
            Some(path) => Some(Database::open(path, DbKind::Asn, self.memory_map)?),
            None => None,
        };
        let databases = Arc::new(Databases { city, asn, generation: 0 });
        let published = Arc::new(Published {
            current: Mutex::new(databases.clone()),
            generation: AtomicU64::new(0),
        });
        let reloader = Reloader {
            id: cx.id.clone(),
            city_path: self.database.clone(),
            asn_path: self.asn_database.clone(),
            memory_map: self.memory_map,
            published: Arc::downgrade(&published),
            failed: None,
            reloads: cx.metrics.counter("geoip_reloads_total", "GeoIP database reloads.", &[]),
            reload_errors: cx.metrics.errors("reload_failed", "processing"),
        };
        // The binary builds inside its runtime; without one (benchmarks,
        // unit tests) reloads are driven by hand through `reload_now`.
        let interval = (self.reload_interval_secs > 0).then(|| Duration::from_secs(self.reload_interval_secs));
        let reloader = match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(reloader.run(interval));
                None
            }
            Err(_) => Some(reloader),
        };
        let lookups = |result: &str| {
            cx.metrics.counter(
                "geoip_lookups_total",
                "Addresses the geoip transform met, by result (found, not_found, private, invalid).",
                &[("result", result)],
            )
        };
        Ok(GeoipTransform {
            locale: Locale::parse(&self.locale),
            anonymize: self.anonymize_ip,
            ipv4_prefix: self.ipv4_prefix.min(32),
            ipv6_prefix: self.ipv6_prefix.min(128),
            databases,
            published,
            cache: RecordCache::new(self.cache_size),
            last: None,
            manual_reloader: reloader,
            found: lookups("found"),
            not_found: lookups("not_found"),
            private: lookups("private"),
            invalid: lookups("invalid"),
            invalid_errors: cx.metrics.errors("invalid_ip", "processing"),
        })
    }
}

pub struct GeoipTransform {
    locale: Locale,
    anonymize: AnonymizeIp,
    ipv4_prefix: u8,
    ipv6_prefix: u8,
    /// The databases this task reads; replaced between batches after a reload.
    databases: Arc<Databases>,
    published: Arc<Published>,
    cache: RecordCache,
    /// The previous event's address and what it resolved to: the events of
    /// one beacon share their address, so most events skip the lookup.
    last: Option<(String, Resolved)>,
    /// The reloader when no runtime was there to run it (tests, benchmarks).
    manual_reloader: Option<Reloader>,
    found: Counter,
    not_found: Counter,
    private: Counter,
    invalid: Counter,
    invalid_errors: Counter,
}

/// What one address resolved to.
struct Resolved {
    outcome: Outcome,
    geo: Option<Arc<Value>>,
    asn: Option<Arc<Value>>,
    /// `client.ip` after anonymization; `None` removes it.
    anonymized: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Found,
    NotFound,
    Private,
    Invalid,
}

#[derive(Default)]
struct Tally {
    found: u64,
    not_found: u64,
    private: u64,
    invalid: u64,
}

impl FunctionTransform for GeoipTransform {
    fn transform_batch(&mut self, batch: &mut Batch) {
        self.pick_up_reload();
        let mut tally = Tally::default();
        for event in batch.iter_mut() {
            self.enrich(event, &mut tally);
        }
        self.found.add(tally.found);
        self.not_found.add(tally.not_found);
        self.private.add(tally.private);
        self.invalid.add(tally.invalid);
        self.invalid_errors.add(tally.invalid);
    }
}

impl GeoipTransform {
    /// Reopens the databases now if they changed (or always, with `force`),
    /// for setups without a runtime. With a runtime the background task does
    /// this; the call then only picks up what it published.
    pub fn reload_now(&mut self, force: bool) -> Option<ReloadOutcome> {
        let outcome = self.manual_reloader.as_mut().and_then(|r| r.reload(force));
        self.pick_up_reload();
        outcome
    }

    fn pick_up_reload(&mut self) {
        let generation = self.published.generation.load(Ordering::Acquire);
        if generation != self.databases.generation {
            self.databases = self.published.current.lock().unwrap_or_else(|e| e.into_inner()).clone();
            self.cache.clear();
            self.last = None;
        }
    }

    fn enrich(&mut self, event: &mut Event, tally: &mut Tally) {
        let Some(ip_text) = event.get_str(schema::CLIENT_IP) else {
            return;
        };
        if !matches!(&self.last, Some((last_ip, _)) if last_ip == ip_text) {
            let resolved = self.resolve(ip_text);
            self.last = Some((ip_text.to_owned(), resolved));
        }
        let Some((_, resolved)) = &self.last else {
            return;
        };
        match resolved.outcome {
            Outcome::Found => tally.found += 1,
            Outcome::NotFound => tally.not_found += 1,
            Outcome::Private => tally.private += 1,
            Outcome::Invalid => tally.invalid += 1,
        }
        if resolved.geo.is_some() || resolved.asn.is_some() {
            if let Some(Value::Object(client)) = event.get_mut("client") {
                if let Some(geo) = &resolved.geo {
                    client.insert("geo".to_owned(), Value::clone(geo));
                }
                if let Some(asn) = &resolved.asn {
                    client.insert("as".to_owned(), Value::clone(asn));
                }
            }
        }
        match (&resolved.anonymized, self.anonymize) {
            (_, AnonymizeIp::Off) => {}
            (Some(ip), _) => event.insert(schema::CLIENT_IP, ip.as_str()),
            (None, _) => {
                event.remove(schema::CLIENT_IP);
            }
        }
    }

    fn resolve(&mut self, ip_text: &str) -> Resolved {
        let Ok(ip) = ip_text.trim().parse::<IpAddr>() else {
            // An address that cannot be read cannot be anonymized either:
            // with anonymization on it is removed rather than stored.
            return Resolved {
                outcome: Outcome::Invalid,
                geo: None,
                asn: None,
                anonymized: None,
            };
        };
        let ip = ip.to_canonical();
        let anonymized = match self.anonymize {
            AnonymizeIp::Off | AnonymizeIp::Drop => None,
            AnonymizeIp::Truncate => Some(truncate(ip, self.ipv4_prefix, self.ipv6_prefix).to_string()),
        };
        if !is_public(ip) {
            return Resolved {
                outcome: Outcome::Private,
                geo: None,
                asn: None,
                anonymized,
            };
        }
        let locale = self.locale;
        let dbs = &*self.databases;
        let geo = lookup(&dbs.city, ip, &mut self.cache.city, self.cache.capacity, |found| {
            found.decode::<geoip2::City>().ok().flatten().and_then(|city| city_fields(&city, locale))
        });
        let asn = dbs.asn.as_ref().and_then(|db| {
            lookup(db, ip, &mut self.cache.asn, self.cache.capacity, |found| {
                found.decode::<geoip2::Asn>().ok().flatten().and_then(|asn| asn_fields(&asn))
            })
        });
        Resolved {
            outcome: if geo.is_some() || asn.is_some() {
                Outcome::Found
            } else {
                Outcome::NotFound
            },
            geo,
            asn,
            anonymized,
        }
    }
}

type RecordMap = FxHashMap<usize, Option<Arc<Value>>>;

/// Looks `ip` up and returns its record's fields, decoding each record once:
/// many addresses share a record (every address of a city's networks), so
/// the cache, keyed by the record's offset in the file, holds the working set.
fn lookup(
    db: &Database,
    ip: IpAddr,
    cache: &mut RecordMap,
    capacity: usize,
    decode: impl FnOnce(&maxminddb::LookupResult<'_, Source>) -> Option<Value>,
) -> Option<Arc<Value>> {
    let found = db.reader.lookup(ip).ok()?;
    let offset = found.offset()?;
    if let Some(fields) = cache.get(&offset) {
        return fields.clone();
    }
    let fields = decode(&found).map(Arc::new);
    if capacity > 0 {
        if cache.len() >= capacity {
            cache.clear();
        }
        cache.insert(offset, fields.clone());
    }
    fields
}

/// Keeps the first `prefix` bits.
pub fn truncate(ip: IpAddr, ipv4_prefix: u8, ipv6_prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(ipv4_prefix.min(32))).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(ipv6_prefix.min(128))).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

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
enum Locale {
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
    fn parse(name: &str) -> Self {
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

/// Decoded records by data-section offset. Emptied when full (a crude but
/// bounded policy: the working set refills it at once) and on reload, since
/// offsets mean nothing in another file.
struct RecordCache {
    capacity: usize,
    city: RecordMap,
    asn: RecordMap,
}

impl RecordCache {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            city: FxHashMap::default(),
            asn: FxHashMap::default(),
        }
    }

    fn clear(&mut self) {
        self.city.clear();
        self.asn.clear();
    }
}

/// A City record as the `client.geo` object.
fn city_fields(city: &geoip2::City<'_>, locale: Locale) -> Option<Value> {
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
            geo.insert("location".to_owned(), serde_json::json!({"lat": lat, "lon": lon}));
        }
    }
    (!geo.is_empty()).then_some(Value::Object(geo))
}

/// An ASN record as the `client.as` object.
fn asn_fields(asn: &geoip2::Asn<'_>) -> Option<Value> {
    let mut out = Map::new();
    if let Some(number) = asn.autonomous_system_number {
        out.insert("number".to_owned(), Value::from(number));
    }
    if let Some(org) = asn.autonomous_system_organization.filter(|o| !o.is_empty()) {
        out.insert("organization".to_owned(), serde_json::json!({"name": org}));
    }
    (!out.is_empty()).then_some(Value::Object(out))
}
