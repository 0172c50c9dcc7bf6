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
use std::net::IpAddr;
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
use crate::event::{Batch, Context, Event, FieldId, FieldValue};
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
    #[serde(default = "crate::config::default_true")]
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
                format!(
                    "`{}` is not a GeoIP2 language (one of: {})",
                    self.locale,
                    LOCALES.join(", ")
                ),
            ));
        }
        if self.ipv4_prefix > 32 {
            problems.push((
                "ipv4_prefix",
                format!("{} is more than 32 bits", self.ipv4_prefix),
            ));
        }
        if self.ipv6_prefix > 128 {
            problems.push((
                "ipv6_prefix",
                format!("{} is more than 128 bits", self.ipv6_prefix),
            ));
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
                Ok(if v {
                    AnonymizeIp::Truncate
                } else {
                    AnonymizeIp::Off
                })
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
        let stamp = FileStamp::of(path)
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
            decoded
                .with_context(|| format!("{} is damaged (record of {probe})", path.display()))?;
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
        let current = published
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let stamps = (
            FileStamp::of(&self.city_path).ok(),
            self.asn_path.as_deref().map(|p| FileStamp::of(p).ok()),
        );
        let unchanged = stamps.0 == Some(current.city.stamp)
            && stamps.1 == current.asn.as_ref().map(|a| Some(a.stamp));
        if !force && unchanged {
            return Some(ReloadOutcome::Unchanged);
        }
        let key = stamps.0.map(|c| (c, stamps.1.flatten()));
        if !force && key.is_some() && key == self.failed {
            return Some(ReloadOutcome::Unchanged);
        }
        let opened =
            Database::open(&self.city_path, DbKind::City, self.memory_map).and_then(|city| {
                let asn = match &self.asn_path {
                    Some(path) => Some(Database::open(path, DbKind::Asn, self.memory_map)?),
                    None => None,
                };
                Ok((city, asn))
            });
        match opened {
            Ok((city, asn)) => {
                let generation = current.generation + 1;
                let fresh = Arc::new(Databases {
                    city,
                    asn,
                    generation,
                });
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
    async fn run(mut self, interval: Option<Duration>, mut hangup: Hangup) {
        let mut ticker = interval.map(|every| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        // The transform going away is noticed at the latest after this long.
        let mut liveness = tokio::time::interval(Duration::from_secs(5));
        loop {
            let force = tokio::select! {
                _ = tick(&mut ticker) => false,
                _ = hangup_recv(&mut hangup) => true,
                _ = liveness.tick() => {
                    if self.published.strong_count() == 0 {
                        return;
                    }
                    continue;
                }
            };
            // Opening and probing a database reads the disk: off the workers.
            let reloader = std::mem::replace(&mut self, Reloader::placeholder());
            let joined = tokio::task::spawn_blocking(move || {
                let mut reloader = reloader;
                let outcome = reloader.reload(force);
                (reloader, outcome)
            })
            .await;
            match joined {
                Ok((back, Some(_))) => self = back,
                Ok((_, None)) => return,
                Err(e) => {
                    tracing::error!("GeoIP reload task failed: {e}");
                    return;
                }
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

async fn tick(ticker: &mut Option<tokio::time::Interval>) {
    match ticker {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = Option<()>;

/// Subscribes to SIGHUP now, while building, so that a SIGHUP sent as soon as
/// the pipeline runs is never met by the default action (exit).
fn subscribe_hangup(id: &str) -> Hangup {
    #[cfg(unix)]
    {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(|e| tracing::warn!(component = %id, "SIGHUP reloads are off: {e}"))
            .ok()
    }
    #[cfg(not(unix))]
    {
        let _ = id;
        None
    }
}

#[cfg(unix)]
async fn hangup_recv(signal: &mut Hangup) {
    match signal {
        Some(s) => {
            if s.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn hangup_recv(_: &mut Hangup) {
    std::future::pending().await
}

impl GeoipConfig {
    pub fn build(&self, cx: &TransformContext) -> anyhow::Result<GeoipTransform> {
        let city = Database::open(&self.database, DbKind::City, self.memory_map)?;
        let asn = match &self.asn_database {
            Some(path) => Some(Database::open(path, DbKind::Asn, self.memory_map)?),
            None => None,
        };
        let databases = Arc::new(Databases {
            city,
            asn,
            generation: 0,
        });
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
            reloads: cx
                .metrics
                .counter("geoip_reloads_total", "GeoIP database reloads.", &[]),
            reload_errors: cx.metrics.errors("reload_failed", "processing"),
        };
        // The binary builds inside its runtime; without one (benchmarks,
        // unit tests) reloads are driven by hand through `reload_now`.
        let interval =
            (self.reload_interval_secs > 0).then(|| Duration::from_secs(self.reload_interval_secs));
        let reloader = match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                let hangup = {
                    let _entered = handle.enter();
                    subscribe_hangup(&cx.id)
                };
                handle.spawn(reloader.run(interval, hangup));
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

/// The last context looked up, what it became (`None`: unchanged), and the outcome.
type LastContext = (Arc<Context>, Option<Arc<Context>>, Option<Outcome>);

impl FunctionTransform for GeoipTransform {
    fn transform_batch(&mut self, batch: &mut Batch) {
        self.pick_up_reload();
        let mut tally = Tally::default();
        // A beacon's events share one context: look its address up once and
        // hand every event the enriched context.
        let mut last: Option<LastContext> = None;
        for event in batch.iter_mut() {
            let seen = last
                .as_ref()
                .is_some_and(|(original, _, _)| Arc::ptr_eq(original, event.context()));
            if !seen {
                let original = event.context().clone();
                let mut context = Event::editing(&original);
                let outcome = self.enrich(&mut context);
                let enriched = outcome.map(|_| Arc::new(context.into_context()));
                last = Some((original, enriched, outcome));
            }
            let Some((_, enriched, outcome)) = &last else {
                continue;
            };
            match outcome {
                Some(Outcome::Found) => tally.found += 1,
                Some(Outcome::NotFound) => tally.not_found += 1,
                Some(Outcome::Private) => tally.private += 1,
                Some(Outcome::Invalid) => tally.invalid += 1,
                None => {}
            }
            if let Some(enriched) = enriched {
                event.set_context(enriched.clone());
            }
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
            self.databases = self
                .published
                .current
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            self.cache.clear();
            self.last = None;
        }
    }

    /// Enriches a context (as an editing event); `None` when it has no address.
    fn enrich(&mut self, event: &mut Event) -> Option<Outcome> {
        // The whole address when the source kept it for us (documents only
        // ever get it truncated, by default), else what `client.ip` says.
        let whole = event.context().client_address().map(|ip| ip.to_string());
        let ip_text = match &whole {
            Some(text) => text.as_str(),
            None => event.get_str(schema::CLIENT_IP)?,
        };
        if !matches!(&self.last, Some((last_ip, _)) if last_ip == ip_text) {
            let resolved = self.resolve(ip_text);
            self.last = Some((ip_text.to_owned(), resolved));
        }
        let has_ip = event.get(schema::CLIENT_IP).is_some();
        let (_, resolved) = self.last.as_ref()?;
        if let Some(geo) = &resolved.geo {
            event.set(
                FieldId::of(schema::CLIENT_GEO),
                FieldValue::Shared(geo.clone()),
            );
        }
        if let Some(asn) = &resolved.asn {
            event.set(
                FieldId::of(schema::CLIENT_AS),
                FieldValue::Shared(asn.clone()),
            );
        }
        let ip = FieldId::of(schema::CLIENT_IP);
        match (&resolved.anonymized, self.anonymize) {
            (_, AnonymizeIp::Off) => {}
            // The source stores no address: there is nothing to rewrite.
            _ if !has_ip => {}
            (Some(anonymized), _) => event.set(ip, anonymized.as_str()),
            (None, _) => event.remove_id(ip),
        }
        Some(resolved.outcome)
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
            AnonymizeIp::Truncate => {
                Some(truncate(ip, self.ipv4_prefix, self.ipv6_prefix).to_string())
            }
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
        let geo = lookup(
            &dbs.city,
            ip,
            &mut self.cache.city,
            self.cache.capacity,
            |found| {
                found
                    .decode::<geoip2::City>()
                    .ok()
                    .flatten()
                    .and_then(|city| city_fields(&city, locale))
            },
        );
        let asn = dbs.asn.as_ref().and_then(|db| {
            lookup(db, ip, &mut self.cache.asn, self.cache.capacity, |found| {
                found
                    .decode::<geoip2::Asn>()
                    .ok()
                    .flatten()
                    .and_then(|asn| asn_fields(&asn))
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
            geo.insert(
                "location".to_owned(),
                serde_json::json!({"lat": lat, "lon": lon}),
            );
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::{ComponentMetrics, Registry};
    use serde_json::json;

    fn testdata(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/geoip")
            .join(name)
    }

    const CITY: &str = "GeoIP2-City-Test.mmdb";
    const UPDATED: &str = "GeoIP2-City-Test-updated.mmdb";
    const ASN: &str = "GeoLite2-ASN-Test.mmdb";

    fn config() -> GeoipConfig {
        let mut config = GeoipConfig::new(testdata(CITY));
        config.asn_database = Some(testdata(ASN));
        config
    }

    fn build(config: &GeoipConfig) -> anyhow::Result<(GeoipTransform, ComponentMetrics)> {
        let registry = Registry::new();
        let metrics = ComponentMetrics::new(&registry, "geo", "transform", "geoip");
        let cx = TransformContext {
            id: "geo".into(),
            metrics: metrics.clone(),
        };
        Ok((config.build(&cx)?, metrics))
    }

    fn run(t: &mut GeoipTransform, ips: &[&str]) -> Vec<Event> {
        let mut batch: Batch = ips
            .iter()
            .map(|ip| Event::from(json!({"client": {"ip": ip}, "rum": {"type": "page_view"}})))
            .collect();
        t.transform_batch(&mut batch);
        batch
    }

    fn lookups(metrics: &ComponentMetrics, result: &str) -> u64 {
        metrics
            .registry()
            .counter_sum("geoip_lookups_total", &[("result", result)])
    }

    #[test]
    fn test_databases_decode_as_maxmind_types() {
        let reader = Reader::open_readfile(testdata(CITY)).expect("opens");
        assert_eq!(reader.metadata().database_type, "GeoIP2-City");
        let found = reader
            .lookup("81.2.69.142".parse().unwrap())
            .expect("looks up");
        let city: geoip2::City = found.decode().expect("decodes").expect("has a record");
        assert_eq!(city.city.geoname_id, Some(2643743));
        assert_eq!(city.country.geoname_id, Some(2635167));
        assert_eq!(city.location.latitude, Some(51.5142));
        assert_eq!(city.location.accuracy_radius, Some(10));
        assert_eq!(city.subdivisions[0].iso_code, Some("ENG"));
        let asn_reader = Reader::open_readfile(testdata(ASN)).expect("opens");
        let found = asn_reader
            .lookup("2a02:598::1".parse().unwrap())
            .expect("looks up");
        let asn: geoip2::Asn = found.decode().expect("decodes").expect("has a record");
        assert_eq!(asn.autonomous_system_number, Some(43037));
    }

    #[test]
    fn ipv4_city_record_and_asn() {
        let (mut t, metrics) = build(&config()).unwrap();
        let events = run(&mut t, &["81.2.69.142"]);
        assert_eq!(
            events[0].to_value().get("client"),
            Some(&json!({
                "ip": "81.2.69.0",
                "geo": {
                    "continent_code": "EU",
                    "country_iso_code": "GB",
                    "country_name": "United Kingdom",
                    "region_iso_code": "GB-ENG",
                    "region_name": "England",
                    "city_name": "London",
                    "postal_code": "EC2V",
                    "timezone": "Europe/London",
                    "location": {"lat": 51.5142, "lon": -0.0931}
                },
                "as": {"number": 20712, "organization": {"name": "Andrews & Arnold Ltd"}}
            }))
        );
        assert_eq!(lookups(&metrics, "found"), 1);
    }

    #[test]
    fn ipv6_city_record_and_truncation_to_48() {
        let (mut t, _) = build(&config()).unwrap();
        let events = run(&mut t, &["2a02:598:1234:5678::9"]);
        assert_eq!(events[0].get_str("client.ip"), Some("2a02:598:1234::"));
        assert_eq!(events[0].get_str("client.geo.city_name"), Some("Prague"));
        assert_eq!(
            events[0].get_str("client.geo.region_iso_code"),
            Some("CZ-10")
        );
        assert_eq!(events[0].get("client.as.number"), Some(&json!(43037)));
    }

    #[test]
    fn country_without_city() {
        let (mut t, _) = build(&config()).unwrap();
        let events = run(&mut t, &["2001:218::1", "67.43.156.7"]);
        assert_eq!(
            events[0].get("client.geo"),
            Some(&json!({
                "continent_code": "AS",
                "country_iso_code": "JP",
                "country_name": "Japan",
                "timezone": "Asia/Tokyo",
                "location": {"lat": 35.69, "lon": 139.69}
            }))
        );
        assert_eq!(
            events[1].get("client.geo"),
            Some(
                &json!({"continent_code": "AS", "country_iso_code": "BT", "country_name": "Bhutan"})
            )
        );
        assert_eq!(events[1].get("client.as"), None);
    }

    #[test]
    fn locale_with_english_fallback() {
        let mut config = config();
        config.locale = "de".into();
        let (mut t, _) = build(&config).unwrap();
        let events = run(&mut t, &["89.160.20.1", "2001:218::1"]);
        assert_eq!(
            events[0].get_str("client.geo.country_name"),
            Some("Schweden")
        );
        assert_eq!(events[0].get_str("client.geo.city_name"), Some("Linköping"));
        // No German name in the record: English.
        assert_eq!(
            events[0].get_str("client.geo.region_name"),
            Some("Östergötland County")
        );
        assert_eq!(events[1].get_str("client.geo.country_name"), Some("Japan"));
    }

    #[test]
    fn private_loopback_and_link_local_are_not_looked_up_but_counted() {
        let (mut t, metrics) = build(&config()).unwrap();
        // The test database has a record for 10.0.0.0/8; it must not be used.
        let ips = [
            "10.1.2.3",
            "127.0.0.1",
            "169.254.10.20",
            "192.168.1.1",
            "100.64.1.1",
            "::1",
            "fe80::1",
            "fd00::1",
        ];
        let events = run(&mut t, &ips);
        for (ip, event) in ips.iter().zip(&events) {
            assert_eq!(event.get("client.geo"), None, "{ip}");
        }
        assert_eq!(events[0].get_str("client.ip"), Some("10.1.2.0"));
        assert_eq!(events[5].get_str("client.ip"), Some("::"));
        assert_eq!(lookups(&metrics, "private"), ips.len() as u64);
        assert_eq!(lookups(&metrics, "found"), 0);
    }

    #[test]
    fn address_not_in_the_database() {
        let (mut t, metrics) = build(&config()).unwrap();
        let events = run(&mut t, &["8.8.8.8"]);
        assert_eq!(events[0].to_value()["client"], json!({"ip": "8.8.8.0"}));
        assert_eq!(lookups(&metrics, "not_found"), 1);
    }

    #[test]
    fn ipv4_mapped_ipv6_is_looked_up_as_ipv4() {
        let (mut t, _) = build(&config()).unwrap();
        let events = run(&mut t, &["::ffff:81.2.69.142"]);
        assert_eq!(events[0].get_str("client.geo.city_name"), Some("London"));
        assert_eq!(events[0].get_str("client.ip"), Some("81.2.69.0"));
    }

    #[test]
    fn anonymize_modes_and_prefixes() {
        let mut drop = config();
        drop.anonymize_ip = AnonymizeIp::Drop;
        let (mut t, _) = build(&drop).unwrap();
        let events = run(&mut t, &["81.2.69.142", "10.0.0.1"]);
        assert_eq!(events[0].get("client.ip"), None);
        assert_eq!(
            events[0].get_str("client.geo.city_name"),
            Some("London"),
            "looked up before dropping"
        );
        assert_eq!(events[1].get("client.ip"), None);

        let mut off = config();
        off.anonymize_ip = AnonymizeIp::Off;
        let (mut t, _) = build(&off).unwrap();
        let events = run(&mut t, &["81.2.69.142"]);
        assert_eq!(events[0].get_str("client.ip"), Some("81.2.69.142"));

        let mut wide = config();
        (wide.ipv4_prefix, wide.ipv6_prefix) = (16, 32);
        let (mut t, _) = build(&wide).unwrap();
        let events = run(&mut t, &["81.2.69.142", "2a02:598:1234::1"]);
        assert_eq!(events[0].get_str("client.ip"), Some("81.2.0.0"));
        assert_eq!(events[1].get_str("client.ip"), Some("2a02:598::"));

        assert_eq!(
            truncate("1.2.3.4".parse().unwrap(), 0, 0).to_string(),
            "0.0.0.0"
        );
        assert_eq!(
            truncate("1.2.3.4".parse().unwrap(), 32, 128).to_string(),
            "1.2.3.4"
        );
        assert_eq!(
            truncate("2001:db8::1".parse().unwrap(), 32, 128).to_string(),
            "2001:db8::1"
        );
    }

    #[test]
    fn anonymize_ip_accepts_bool_and_names() {
        let parse = |v: &str| {
            crate::config::decode::<GeoipConfig>(
                toml::from_str(&format!("database = \"x\"\nanonymize_ip = {v}")).unwrap(),
            )
        };
        assert_eq!(parse("true").unwrap().anonymize_ip, AnonymizeIp::Truncate);
        assert_eq!(parse("false").unwrap().anonymize_ip, AnonymizeIp::Off);
        assert_eq!(parse("\"drop\"").unwrap().anonymize_ip, AnonymizeIp::Drop);
        let (key, message) = parse("\"hash\"").unwrap_err();
        assert_eq!(key, "anonymize_ip");
        assert!(message.contains("\"drop\""), "{message}");
        assert_eq!(parse("true").unwrap().check(), vec![]);
        let mut bad = parse("true").unwrap();
        (bad.ipv4_prefix, bad.ipv6_prefix, bad.locale) = (33, 129, "xx".into());
        let keys: Vec<_> = bad.check().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["locale", "ipv4_prefix", "ipv6_prefix"]);
    }

    #[test]
    fn unreadable_addresses_are_counted_and_not_kept_when_anonymizing() {
        let (mut t, metrics) = build(&config()).unwrap();
        let events = run(&mut t, &["not-an-ip", "", "81.2.69.142:443", "1.2.3.4.5"]);
        for event in &events {
            assert_eq!(event.get("client.ip"), None);
            assert_eq!(event.get("client.geo"), None);
        }
        assert_eq!(lookups(&metrics, "invalid"), 4);
        assert_eq!(
            metrics
                .registry()
                .counter_sum("component_errors_total", &[("error_type", "invalid_ip")]),
            4
        );

        let mut off = config();
        off.anonymize_ip = AnonymizeIp::Off;
        let (mut t, _) = build(&off).unwrap();
        assert_eq!(
            run(&mut t, &["not-an-ip"])[0].get_str("client.ip"),
            Some("not-an-ip")
        );
    }

    #[test]
    fn events_without_client_ip_pass_untouched() {
        let (mut t, _) = build(&config()).unwrap();
        let original = Event::from(json!({"rum": {"type": "web_vital"}, "client": {"ip": 42}}));
        let mut batch = vec![
            original.clone(),
            Event::from(json!({"rum": {"type": "action"}})),
        ];
        t.transform_batch(&mut batch);
        assert_eq!(batch[0], original);
        assert_eq!(batch[1], Event::from(json!({"rum": {"type": "action"}})));
    }

    #[test]
    fn runs_of_one_address_and_caches_give_the_same_answer() {
        let (mut t, metrics) = build(&config()).unwrap();
        let ips = [
            "81.2.69.142",
            "81.2.69.142",
            "81.2.69.7",
            "89.160.20.1",
            "81.2.69.142",
            "10.0.0.1",
            "10.0.0.1",
        ];
        let first = run(&mut t, &ips);
        let second = run(&mut t, &ips);
        assert_eq!(first, second);
        assert_eq!(first[0].get("client.geo"), first[2].get("client.geo"));
        assert_eq!(lookups(&metrics, "found"), 10);
        assert_eq!(lookups(&metrics, "private"), 4);
        let mut uncached = config();
        uncached.cache_size = 0;
        let (mut t, _) = build(&uncached).unwrap();
        assert_eq!(run(&mut t, &ips), first);
    }

    #[test]
    fn missing_corrupt_or_wrong_databases_fail_the_build_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let message =
            |config: &GeoipConfig| format!("{:#}", build(config).err().expect("build fails"));

        let missing = dir.path().join("nope.mmdb");
        let shown = message(&GeoipConfig::new(&missing));
        assert!(shown.contains(&missing.display().to_string()), "{shown}");

        let garbage = dir.path().join("garbage.mmdb");
        std::fs::write(&garbage, b"not a maxmind database at all").unwrap();
        let shown = message(&GeoipConfig::new(&garbage));
        assert!(
            shown.contains(&garbage.display().to_string())
                && shown.contains("not a valid MaxMind DB"),
            "{shown}"
        );

        let empty = dir.path().join("empty.mmdb");
        std::fs::write(&empty, b"").unwrap();
        assert!(message(&GeoipConfig::new(&empty)).contains(&empty.display().to_string()));

        // Metadata intact, search tree and data zeroed.
        let mut bytes = std::fs::read(testdata(CITY)).unwrap();
        let marker = b"\xab\xcd\xefMaxMind.com";
        let meta = bytes
            .windows(marker.len())
            .rposition(|w| w == marker)
            .unwrap();
        bytes[..meta].iter_mut().for_each(|b| *b = 0xff);
        let damaged = dir.path().join("damaged.mmdb");
        std::fs::write(&damaged, &bytes).unwrap();
        for memory_map in [true, false] {
            let mut config = GeoipConfig::new(&damaged);
            config.memory_map = memory_map;
            let shown = message(&config);
            assert!(shown.contains(&damaged.display().to_string()), "{shown}");
        }

        let shown = message(&GeoipConfig::new(testdata(ASN)));
        assert!(
            shown.contains("GeoLite2-ASN") && shown.contains("expected a City"),
            "{shown}"
        );
        let mut swapped = GeoipConfig::new(testdata(CITY));
        swapped.asn_database = Some(testdata(CITY));
        assert!(message(&swapped).contains("expected an ASN database"));
    }

    #[test]
    fn read_into_memory_works_like_mapped() {
        let mut config = config();
        config.memory_map = false;
        let (mut t, _) = build(&config).unwrap();
        assert_eq!(
            run(&mut t, &["81.2.69.142"])[0].get_str("client.geo.city_name"),
            Some("London")
        );
    }

    /// Replaces `to` by `from` the way geoipupdate does: a new file renamed over.
    fn replace(from: &Path, to: &Path) {
        let tmp = to.with_extension("tmp");
        std::fs::copy(from, &tmp).unwrap();
        std::fs::rename(&tmp, to).unwrap();
    }

    #[test]
    fn reloads_a_replaced_file_and_keeps_the_old_one_when_the_new_is_bad() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("City.mmdb");
        std::fs::copy(testdata(CITY), &path).unwrap();
        let mut config = GeoipConfig::new(&path);
        config.reload_interval_secs = 0;
        let (mut t, metrics) = build(&config).unwrap();
        assert_eq!(
            run(&mut t, &["81.2.69.142"])[0].get_str("client.geo.city_name"),
            Some("London")
        );
        assert_eq!(t.reload_now(false), Some(ReloadOutcome::Unchanged));

        replace(&testdata(UPDATED), &path);
        assert_eq!(t.reload_now(false), Some(ReloadOutcome::Reloaded));
        let events = run(&mut t, &["81.2.69.142", "89.160.20.1"]);
        assert_eq!(
            events[0].get_str("client.geo.city_name"),
            Some("Manchester")
        );
        assert_eq!(events[1].get_str("client.geo.city_name"), Some("Linköping"));

        let bad = dir.path().join("bad.mmdb");
        std::fs::write(&bad, b"truncated download").unwrap();
        replace(&bad, &path);
        assert_eq!(t.reload_now(false), Some(ReloadOutcome::Failed));
        assert_eq!(
            t.reload_now(false),
            Some(ReloadOutcome::Unchanged),
            "a bad file is tried once"
        );
        assert_eq!(
            run(&mut t, &["81.2.69.142"])[0].get_str("client.geo.city_name"),
            Some("Manchester")
        );
        assert_eq!(
            metrics
                .registry()
                .counter_sum("component_errors_total", &[("error_type", "reload_failed")]),
            1
        );

        // SIGHUP forces a reopen even when nothing looks changed.
        replace(&testdata(CITY), &path);
        assert_eq!(t.reload_now(true), Some(ReloadOutcome::Reloaded));
        assert_eq!(t.reload_now(true), Some(ReloadOutcome::Reloaded));
        assert_eq!(
            run(&mut t, &["81.2.69.142"])[0].get_str("client.geo.city_name"),
            Some("London")
        );
        assert_eq!(
            metrics.registry().counter_sum("geoip_reloads_total", &[]),
            3
        );
    }

    #[test]
    fn public_and_non_public_addresses() {
        for ip in [
            "1.1.1.1",
            "81.2.69.142",
            "2a02:598::1",
            "2001:4860::8888",
            "172.32.0.1",
            "100.128.0.1",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "10.0.0.1",
            "172.16.0.1",
            "192.168.0.1",
            "127.0.0.1",
            "169.254.1.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "100.64.0.1",
            "192.0.2.1",
            "::",
            "::1",
            "fe80::1",
            "fc00::1",
            "ff02::1",
            "2001:db8::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
    }
}
