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
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use maxminddb::geoip2;
use quick_cache::unsync::Cache as AddressCache;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use serde_json::Value;

use super::{FunctionTransform, TransformContext};
use crate::config::CheckConfig;
use crate::event::{context_runs, Batch, Context, Event, FieldId, FieldValue};
use crate::schema;
use crate::telemetry::Counter;

mod lookup;
#[cfg(test)]
mod tests;

pub use crate::reload::ReloadOutcome;
use crate::reload::{ReloadCounters, Reloadable};
use lookup::{asn_fields, city_fields, lookup, DatabaseFiles, Locale, RecordCache};
pub use lookup::{is_public, truncate};

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
    /// tree walk and a map lookup, not a decode; and as many recent client
    /// addresses with what they resolved to, so a client's next beacon costs
    /// one lookup, not a tree walk. 0 turns both caches off.
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
        // Far enough ahead, `Instant + interval` overflows and the reloader
        // task panics, silently ending reloads.
        let max = crate::http::limits::MAX_TIMEOUT_SECS;
        if self.reload_interval_secs > max {
            problems.push((
                "reload_interval_secs",
                format!("must be at most {max} (a day); 0 turns polling off"),
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

impl GeoipConfig {
    pub fn build(&self, cx: &TransformContext) -> anyhow::Result<GeoipTransform> {
        let files = DatabaseFiles {
            city: self.database.clone(),
            asn: self.asn_database.clone(),
            memory_map: self.memory_map,
        };
        let interval =
            (self.reload_interval_secs > 0).then(|| Duration::from_secs(self.reload_interval_secs));
        let counters = ReloadCounters {
            reloads: cx
                .metrics
                .counter("geoip_reloads_total", "GeoIP database reloads.", &[]),
            errors: cx.metrics.errors("reload_failed", "processing"),
        };
        let databases = Reloadable::start(&cx.id, files, interval, counters)?;
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
            cache: RecordCache::new(self.cache_size),
            addresses: (self.cache_size > 0).then(|| AddressCache::new(self.cache_size)),
            last: None,
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
    databases: Reloadable<DatabaseFiles>,
    cache: RecordCache,
    /// Recent whole addresses and what they resolved to (`cache_size` of
    /// them): a client sends beacon after beacon, between other clients'.
    addresses: Option<AddressCache<IpAddr, Resolved>>,
    /// The previous event's address and what it resolved to: the events of
    /// one beacon share their address, so most events skip the lookup.
    last: Option<(LastAddress, Resolved)>,
    found: Counter,
    not_found: Counter,
    private: Counter,
    invalid: Counter,
    invalid_errors: Counter,
}

/// The address `last` resolved: the whole one the source kept, or the
/// text of `client.ip`. Compared as it comes, not formatted to text first.
enum LastAddress {
    Whole(IpAddr),
    Text(String),
}

/// What one address resolved to (its values shared: a copy is refcounts).
#[derive(Clone)]
struct Resolved {
    outcome: Outcome,
    geo: Option<FieldValue>,
    asn: Option<FieldValue>,
    /// `client.ip` after anonymization; `None` removes it. Shared: a
    /// beacon from the same address as the last pays a refcount.
    anonymized: Option<Arc<Value>>,
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
        // A beacon's events share one context: look its address up once and
        // enrich the context they share, in place (its own slots, not through
        // an event made of them: moving its twenty-odd fields into one and
        // back cost ~1k instructions a beacon).
        for run in context_runs(batch) {
            let outcome = if has_address(run[0].context()) {
                Event::edit_shared_context(run, |context| self.enrich(context))
            } else {
                None
            };
            let events = run.len() as u64;
            match outcome {
                Some(Outcome::Found) => tally.found += events,
                Some(Outcome::NotFound) => tally.not_found += events,
                Some(Outcome::Private) => tally.private += events,
                Some(Outcome::Invalid) => tally.invalid += events,
                None => {}
            }
        }
        self.found.add(tally.found);
        self.not_found.add(tally.not_found);
        self.private.add(tally.private);
        self.invalid.add(tally.invalid);
        self.invalid_errors.add(tally.invalid);
    }
}

/// The slots the transform reads and writes, resolved once (a path is a
/// hash lookup; they are used for every beacon).
struct Slots {
    ip: FieldId,
    geo: FieldId,
    asn: FieldId,
}

static SLOTS: std::sync::LazyLock<Slots> = std::sync::LazyLock::new(|| Slots {
    ip: FieldId::of(schema::CLIENT_IP),
    geo: FieldId::of(schema::CLIENT_GEO),
    asn: FieldId::of(schema::CLIENT_AS),
});

/// Whether `enrich` has an address to look up in the context.
fn has_address(context: &Context) -> bool {
    context.client_address().is_some() || context.get_str(SLOTS.ip).is_some()
}

impl GeoipTransform {
    /// Reopens the databases now if they changed (or always, with `force`),
    /// for setups without a runtime. With a runtime the background task does
    /// this; the call then only picks up what it published.
    pub fn reload_now(&mut self, force: bool) -> Option<ReloadOutcome> {
        let outcome = self.databases.reload_now(force);
        self.pick_up_reload();
        outcome
    }

    fn pick_up_reload(&mut self) {
        if self.databases.refresh() {
            self.cache.clear();
            if let Some(addresses) = &mut self.addresses {
                addresses.clear();
            }
            self.last = None;
        }
    }

    /// Enriches a context; `None` when it has no address.
    fn enrich(&mut self, context: &mut Context) -> Option<Outcome> {
        // The whole address when the source kept it for us (documents only
        // ever get it truncated, by default), else what `client.ip` says.
        let whole = context.client_address();
        let slots = &*SLOTS;
        let same_as_last = match (&self.last, whole) {
            (Some((LastAddress::Whole(last), _)), Some(ip)) => *last == ip,
            (Some((LastAddress::Text(last), _)), None) => {
                context.get_str(slots.ip) == Some(last.as_str())
            }
            _ => false,
        };
        if !same_as_last {
            let resolved = match whole {
                Some(ip) => (LastAddress::Whole(ip), self.resolve_whole(ip)),
                None => {
                    let text = context.get_str(slots.ip)?;
                    let ip = text.trim().parse().ok();
                    (LastAddress::Text(text.to_owned()), self.resolve(ip))
                }
            };
            self.last = Some(resolved);
        }
        // Asked without reading it: the address is about to be replaced.
        let has_ip = context.has_id(slots.ip);
        let (_, resolved) = self.last.as_ref()?;
        if let Some(geo) = &resolved.geo {
            context.set(slots.geo, geo.clone());
        }
        if let Some(asn) = &resolved.asn {
            context.set(slots.asn, asn.clone());
        }
        let ip = slots.ip;
        match (&resolved.anonymized, self.anonymize) {
            (_, AnonymizeIp::Off) => {}
            // The source stores no address: there is nothing to rewrite.
            _ if !has_ip => {}
            (Some(anonymized), _) => context.set(ip, FieldValue::Shared(anonymized.clone())),
            (None, _) => {
                context.remove_id(ip);
            }
        }
        Some(resolved.outcome)
    }

    /// A whole address the source kept, through the address cache.
    fn resolve_whole(&mut self, ip: IpAddr) -> Resolved {
        if let Some(known) = self.addresses.as_ref().and_then(|cache| cache.get(&ip)) {
            return known.clone();
        }
        let resolved = self.resolve(Some(ip));
        if let Some(addresses) = &mut self.addresses {
            addresses.insert(ip, resolved.clone());
        }
        resolved
    }

    /// `ip` is `None` when `client.ip` held no address.
    fn resolve(&mut self, ip: Option<IpAddr>) -> Resolved {
        let Some(ip) = ip else {
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
                let text = truncate(ip, self.ipv4_prefix, self.ipv6_prefix).to_string();
                Some(Arc::new(Value::String(text)))
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
        let dbs = &**self.databases.current();
        let geo = lookup(&dbs.city, ip, &mut self.cache.city, |found| {
            found
                .decode::<geoip2::City>()
                .ok()
                .flatten()
                .and_then(|city| city_fields(&city, locale))
        });
        let asn = dbs.asn.as_ref().and_then(|db| {
            lookup(db, ip, &mut self.cache.asn, |found| {
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
