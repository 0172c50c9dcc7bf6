//! What the sink asks of the cluster besides `_bulk`, in the background:
//! installing the index templates and ILM policy (`manage_template`), and
//! creating dated indices ahead of time for engines that do not create an
//! index on the first write (`create_indices_ahead_minutes`).
//!
//! The templates are the engine's own ([`Flavour`]): with `engine = "auto"`
//! `GET /` names it; when it does not (403 without the `monitor` privilege,
//! an engine without `GET /`), Elasticsearch's are tried first, and an
//! engine that answers `No handler for type [flattened]` gets OpenSearch's
//! (`flat_object`, and without that type, objects kept in `_source` only)
//! in the same attempt. OpenSearch has no ILM: a retention is then left out,
//! said once in the log and counted, never retried.
//!
//! None of it holds documents back. The first bulk request waits for one
//! attempt — so on a healthy cluster the mappings exist before the first
//! document — and then goes ahead whatever the outcome. A failure (Quickwit
//! answers `404 Route not found` to `_component_template`, a write-only API
//! key gets `403`) is logged (rate-limited), counted as
//! `component_errors_total{error_type="template_install_failed"|"index_create_failed"}`,
//! and retried in the background; it never marks the sink degraded.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};
use tracing::Level;

use super::index::{IndexRouter, IndexTemplate, TemplateField};
use super::request::{Backend, BoxFuture, EsClient, Reply};
use super::retry::{Backoff, Failure};
use super::templates::{Flavour, TemplateSet};
use super::Engine;
use crate::event::Event;
use crate::log_limit::LogLimit;
use crate::telemetry::Counter;

/// Template installs that fail are retried this often, doubling up to the max.
const TEMPLATE_BACKOFF: Backoff = Backoff {
    initial: Duration::from_secs(5),
    max: Duration::from_secs(600),
};
/// How often the index names of `now + ahead` are looked at.
const INDEX_TICK: Duration = Duration::from_secs(60);
/// More names than this from one router are refused at config time:
/// pre-creating them would leave many empty indices (shards) every day.
pub const MAX_PRECREATED_NAMES: usize = 32;

/// Dated indices to create before they are written to.
pub struct IndexPlan {
    router: IndexRouter,
    /// One event per distinct name the router can render.
    probes: Vec<Event>,
    /// Names of `now + ahead` are created now.
    ahead: Duration,
}

impl IndexPlan {
    /// `None` when there is nothing to enumerate (too many names: an error
    /// that `check` reports).
    pub fn new(
        router: IndexRouter,
        template: Option<&str>,
        allowed: &[(TemplateField, Vec<String>)],
        ahead: Duration,
    ) -> Result<IndexPlan, String> {
        let probes = probe_events(template, allowed)?;
        let plan = IndexPlan {
            router,
            probes,
            ahead,
        };
        let count = plan.names_at(&Utc::now()).len();
        if count > MAX_PRECREATED_NAMES {
            return Err(format!(
                "the index names can take {count} values a day; creating them all ahead would leave empty indices — at most {MAX_PRECREATED_NAMES} (list fewer `index_allowed_values`, or use fewer `{{{{ }}}}` fields)"
            ));
        }
        Ok(plan)
    }

    /// Every name written at `at`.
    pub fn names_at(&self, at: &DateTime<Utc>) -> BTreeSet<String> {
        let batch = self.router.prepare(at);
        self.probes.iter().map(|e| batch.name(e)).collect()
    }

    /// Names to exist by now: the current ones and those of `now + ahead`.
    pub fn due(&self, now: &DateTime<Utc>) -> BTreeSet<String> {
        let later = *now + chrono::Duration::from_std(self.ahead).unwrap_or_default();
        let mut names = self.names_at(now);
        names.extend(self.names_at(&later));
        names
    }
}

/// Events that make the router render each name it can: every combination
/// of the values the template's fields may take (a missing field gives the
/// fallback). Without a template, the Canarytrace routing's kinds.
fn probe_events(
    template: Option<&str>,
    allowed: &[(TemplateField, Vec<String>)],
) -> Result<Vec<Event>, String> {
    let Some(template) = template else {
        let kinds = [
            json!({"rum": {"type": "web_vital"}}),
            json!({"rum": {"type": "csp_violation"}, "csp": {"format": "report-uri"}}),
            json!({"rum": {"type": "csp_violation"}, "csp": {"format": "reporting-api"}}),
            json!({"rum": {"type": "report"}}),
        ];
        return Ok(kinds.into_iter().map(Event::from).collect());
    };
    let parsed = IndexTemplate::parse(template)?;
    let mut fields: Vec<TemplateField> = parsed.fields().collect();
    fields.sort();
    fields.dedup();
    let mut combos: Vec<Map<String, Value>> = vec![Map::new()];
    for field in fields {
        let mut values: Vec<Option<String>> = vec![None];
        if let Some(known) = field.known_values() {
            values.extend(known.into_iter().map(|v| Some(v.to_owned())));
        }
        if let Some((_, listed)) = allowed.iter().find(|(f, _)| *f == field) {
            values.extend(listed.iter().cloned().map(Some));
        }
        let mut next = Vec::with_capacity(combos.len() * values.len());
        for combo in &combos {
            for value in &values {
                let mut combo = combo.clone();
                if let Some(value) = value {
                    insert_path(&mut combo, field.path(), value);
                }
                next.push(combo);
            }
        }
        if next.len() > 16 * MAX_PRECREATED_NAMES {
            return Err(format!(
                "the index names can take more than {MAX_PRECREATED_NAMES} values a day; creating them all ahead would leave empty indices"
            ));
        }
        combos = next;
    }
    Ok(combos
        .into_iter()
        .map(|m| Event::from(Value::Object(m)))
        .collect())
}

fn insert_path(map: &mut Map<String, Value>, path: &str, value: &str) {
    match path.split_once('.') {
        None => {
            map.insert(path.to_owned(), Value::String(value.to_owned()));
        }
        Some((head, rest)) => {
            let node = map
                .entry(head.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(inner) = node {
                insert_path(inner, rest, value);
            }
        }
    }
}

/// What `manage_template` installs, and on which engine.
pub struct TemplatePlan {
    pub set: TemplateSet,
    pub engine: Engine,
}

/// What the template installs have learnt so far.
#[derive(Default)]
struct Learnt {
    /// The engine's flavour, once `GET /` or a refusal told it.
    flavour: Option<Flavour>,
    /// The log said that the retention cannot be applied.
    retention_dropped: bool,
}

/// Why a PUT of the templates failed.
enum PutFailure {
    /// The engine has no handler for the flavour's object type.
    NoSuchType(Failure),
    Other(Failure),
}

/// The background work and what it reports to.
pub struct Setup {
    pub id: String,
    pub client: Arc<EsClient>,
    /// `None` without `manage_template`.
    pub templates: Option<TemplatePlan>,
    pub indices: Option<IndexPlan>,
    pub template_errors: Counter,
    pub index_errors: Counter,
}

impl Setup {
    /// Installs templates (retrying until they are in) and keeps the due
    /// indices created. `first_pass` turns true after the first attempt at
    /// everything, whatever its outcome.
    pub async fn run(self, first_pass: watch::Sender<bool>) {
        let log = LogLimit::standard(
            format!("sinks.{}: cluster setup failures", self.id),
            Level::WARN,
        );
        let mut templates_pending = self.templates.is_some();
        let mut learnt = Learnt::default();
        let mut attempt: u32 = 0;
        let mut next_template_try = Instant::now();
        let mut created: BTreeSet<String> = BTreeSet::new();
        loop {
            if templates_pending && Instant::now() >= next_template_try {
                match self.install_templates(&mut learnt).await {
                    Ok((count, flavour)) => {
                        templates_pending = false;
                        tracing::info!(
                            component = %self.id,
                            "installed {count} index template request(s): {} templates",
                            flavour.describe()
                        );
                    }
                    Err(failure) => {
                        self.template_errors.inc();
                        let wait = TEMPLATE_BACKOFF.delay(attempt, None, fastrand::f64());
                        attempt = attempt.saturating_add(1);
                        next_template_try = Instant::now() + wait;
                        if log.admit() {
                            tracing::warn!(
                                component = %self.id,
                                "cannot install the index templates ({failure}); documents are written anyway, with the engine's dynamic mappings (e.g. client.geo.location not a geo_point) until it succeeds; retrying in {} s",
                                wait.as_secs()
                            );
                        }
                    }
                }
            }
            if let Some(plan) = &self.indices {
                self.create_due(plan, &mut created, &log).await;
            }
            first_pass.send_replace(true);
            let mut wake = Instant::now() + INDEX_TICK;
            match (templates_pending, self.indices.is_some()) {
                (false, false) => return,
                (true, false) => wake = next_template_try,
                (true, true) => wake = wake.min(next_template_try),
                (false, true) => {}
            }
            sleep_until(wake).await;
        }
    }

    /// One attempt: the engine's templates, or a failure to retry later.
    async fn install_templates(&self, learnt: &mut Learnt) -> Result<(usize, Flavour), Failure> {
        let Some(plan) = &self.templates else {
            return Ok((0, Flavour::Elasticsearch));
        };
        let mut flavour = match learnt.flavour {
            Some(flavour) => flavour,
            None => {
                let (flavour, known) = self.pick_flavour(plan.engine).await;
                if known {
                    learnt.flavour = Some(flavour);
                }
                flavour
            }
        };
        // The index template's patterns are the same in every flavour.
        self.check_template_is_ours(&plan.set.requests(flavour))
            .await?;
        loop {
            if plan.set.retention_dropped(flavour) && !learnt.retention_dropped {
                learnt.retention_dropped = true;
                self.template_errors.inc();
                tracing::warn!(
                    component = %self.id,
                    "ilm_retention_days = {} is not applied: this is OpenSearch, which has no ILM; the templates are installed without a policy, and indices are kept until something else deletes them. Set ilm_retention_days = 0 and delete old indices with an ISM policy (docs/deployment.md, section OpenSearch)",
                    plan.set.retention_days
                );
            }
            let requests = plan.set.requests(flavour);
            match self.put_all(&requests, flavour).await {
                Ok(()) => {
                    learnt.flavour = Some(flavour);
                    return Ok((requests.len(), flavour));
                }
                Err(PutFailure::NoSuchType(failure)) if plan.engine != Engine::Elasticsearch => {
                    let Some(next) = flavour.without_object_type() else {
                        return Err(failure);
                    };
                    tracing::info!(
                        component = %self.id,
                        "the engine has no `{}` type: installing {} templates instead",
                        flavour.object_type(),
                        next.describe()
                    );
                    flavour = next;
                    learnt.flavour = Some(next);
                }
                Err(PutFailure::NoSuchType(failure) | PutFailure::Other(failure)) => {
                    return Err(failure)
                }
            }
        }
    }

    /// The flavour to try first, and whether the engine said it (`GET /`).
    async fn pick_flavour(&self, engine: Engine) -> (Flavour, bool) {
        match engine {
            Engine::Elasticsearch => return (Flavour::Elasticsearch, true),
            // The version picks between `flat_object` and plain objects;
            // without it, a refusal of `flat_object` does.
            Engine::Opensearch => {}
            Engine::Auto => {}
        }
        let named = match self.client.root().await {
            Ok(reply) if (200..300).contains(&reply.status) && !reply.truncated => {
                super::health::engine(&reply.body)
            }
            _ => None,
        };
        match (engine, named) {
            (_, Some((distribution, version))) if distribution == "opensearch" => {
                (Flavour::for_opensearch(&version), true)
            }
            (Engine::Opensearch, _) => (Flavour::OpenSearch, false),
            (_, Some(_)) => (Flavour::Elasticsearch, true),
            (_, None) => (Flavour::Elasticsearch, false),
        }
    }

    async fn put_all(
        &self,
        requests: &[(String, Value)],
        flavour: Flavour,
    ) -> Result<(), PutFailure> {
        for (path, body) in requests {
            let reply = self
                .client
                .put_json(path, body)
                .await
                .map_err(PutFailure::Other)?;
            if !(200..300).contains(&reply.status) {
                let failure = Failure::new(
                    Some(reply.status),
                    "template_install_failed",
                    format!("PUT {path}: {}", quote(&reply)),
                );
                return Err(if refuses_type(&reply, flavour.object_type()) {
                    PutFailure::NoSuchType(failure)
                } else {
                    PutFailure::Other(failure)
                });
            }
        }
        Ok(())
    }

    /// Templates are named by sink id (`rum-pipeline-<id>`), so every
    /// pipeline built on the same file writes the same names: one already
    /// installed for other index patterns is another pipeline's (another
    /// site's `index_prefix` on a shared cluster). Installed over, it left
    /// that pipeline's new indices without mappings, and its ILM policy of
    /// the same name deleting its indices on this one's retention. Refused
    /// instead, as a failed install (warned, counted, retried). An engine
    /// that cannot answer the look (Quickwit's `404 Route not found`, `403`
    /// for a key that may not read templates) holds nothing back: the PUTs
    /// go ahead as before. A look that fails — no answer (a node down or
    /// restarting: the PUTs go to the next endpoint), `429`, `5xx` — is a
    /// failed install, retried: going ahead unseen installed over the other
    /// pipeline's templates all the same.
    async fn check_template_is_ours(&self, requests: &[(String, Value)]) -> Result<(), Failure> {
        let Some((path, ours)) = requests
            .iter()
            .find(|(path, _)| path.starts_with("_index_template/"))
        else {
            return Ok(());
        };
        let reply = self.client.get(path).await?;
        if matches!(reply.status, 429 | 500..=599) {
            return Err(Failure::new(
                Some(reply.status),
                "template_install_failed",
                format!(
                    "GET {path}, to tell whose the installed template is: {}",
                    quote(&reply)
                ),
            ));
        }
        let installed = (reply.status == 200)
            .then(|| serde_json::from_slice::<Value>(&reply.body).ok())
            .flatten()
            .and_then(|v| {
                v.pointer("/index_templates/0/index_template/index_patterns")
                    .cloned()
            });
        let Some(installed) = installed else {
            return Ok(());
        };
        let (theirs, mine) = (patterns(&installed), patterns(&ours["index_patterns"]));
        if theirs == mine {
            return Ok(());
        }
        Err(Failure::new(
            None,
            "template_of_another_pipeline",
            format!(
                "{path} is installed for other indices ({}), by another pipeline writing to this cluster through a sink of the same id; installing this one's ({}) would take its mappings and ILM policy from it. Give this sink its own template_name (by default rum-pipeline-<sink id>; TEMPLATE_NAME in pipelines/prod.toml), or, if the installed one is an old one of this pipeline's, delete it",
                theirs.into_iter().collect::<Vec<_>>().join(", "),
                mine.into_iter().collect::<Vec<_>>().join(", ")
            ),
        ))
    }

    /// Creates the due names not created yet. A name counts as done once
    /// the engine gave a definite answer (created, already exists, or
    /// refused for good); no answer, 429 and 5xx are tried again next tick.
    async fn create_due(&self, plan: &IndexPlan, created: &mut BTreeSet<String>, log: &LogLimit) {
        let due = plan.due(&Utc::now());
        created.retain(|name| due.contains(name));
        for name in due {
            if created.contains(&name) {
                continue;
            }
            let failure = match self.client.put_json(&name, &json!({})).await {
                Ok(reply) if (200..300).contains(&reply.status) => {
                    tracing::info!(component = %self.id, "created index {name} ahead of its first document");
                    created.insert(name);
                    continue;
                }
                Ok(reply) if already_exists(&reply) => {
                    created.insert(name);
                    continue;
                }
                Ok(reply) => {
                    let definite = !matches!(reply.status, 429 | 500..=599);
                    if definite {
                        created.insert(name.clone());
                    }
                    Failure::new(
                        Some(reply.status),
                        "index_create_failed",
                        format!("PUT {name}: {}", quote(&reply)),
                    )
                }
                Err(failure) => failure,
            };
            self.index_errors.inc();
            if log.admit() {
                tracing::warn!(
                    component = %self.id,
                    "cannot create index {name} ahead of time ({failure}); if this engine creates indices on write, set create_indices_ahead_minutes = 0"
                );
            }
        }
    }
}

/// An index template's `index_patterns`: one pattern or a list.
fn patterns(value: &Value) -> BTreeSet<String> {
    match value {
        Value::String(one) => BTreeSet::from([one.clone()]),
        Value::Array(list) => list
            .iter()
            .filter_map(|p| p.as_str().map(str::to_owned))
            .collect(),
        _ => BTreeSet::new(),
    }
}

/// A mapping refused for a type the engine does not have: `400
/// mapper_parsing_exception` "No handler for type [flattened] declared on
/// field [extra]" (OpenSearch, and Elasticsearch without that type).
fn refuses_type(reply: &Reply, ty: &str) -> bool {
    reply.status == 400
        && String::from_utf8_lossy(&reply.body).contains(&format!("No handler for type [{ty}]"))
}

/// `400 resource_already_exists_exception` (Elasticsearch, OpenSearch).
fn already_exists(reply: &Reply) -> bool {
    reply.status == 400
        && serde_json::from_slice::<Value>(&reply.body)
            .ok()
            .and_then(|v| {
                v.pointer("/error/type")
                    .and_then(Value::as_str)
                    .map(|t| t == "resource_already_exists_exception")
            })
            .unwrap_or(false)
}

fn quote(reply: &Reply) -> String {
    let text = String::from_utf8_lossy(&reply.body);
    let text = text.trim();
    let mut end = text.len().min(300);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} {}", reply.status, &text[..end])
}

/// In data_stream mode, bulk requests go to `_bulk?require_data_stream=true`
/// where the engine takes it. Without it, a write to a data stream's name
/// that no index template with `data_stream` matches (the install refused,
/// or `manage_template = false` and nobody installed it) makes Elasticsearch
/// create a plain index of that name: without the mappings, and holding the
/// name, so the data stream cannot be created until someone deletes it.
/// With it, such items are refused (`retry::DATA_STREAM_MISSING`) and
/// retried, and land in the data stream once the template is in.
///
/// The parameter came with Elasticsearch 8.13; OpenSearch and Elasticsearch
/// before 8.13 refuse every request that carries it (`400 ... unrecognized
/// parameter`). So it is sent when `GET /` names Elasticsearch 8.13 or
/// later, or names nothing (403 without the `monitor` privilege): then the
/// first refusal of the parameter turns it off, and that request is sent
/// again at once without it.
pub struct RequireDataStream {
    engine: Engine,
    /// Decided before the first bulk request.
    decided: tokio::sync::OnceCell<bool>,
    /// Refused by the engine: never sent again.
    refused: AtomicBool,
}

/// `_bulk` with the flag.
const BULK_REQUIRING_A_DATA_STREAM: &str = "_bulk?require_data_stream=true";

impl RequireDataStream {
    pub fn new(engine: Engine) -> Self {
        Self {
            engine,
            decided: tokio::sync::OnceCell::new(),
            refused: AtomicBool::new(false),
        }
    }

    async fn wanted(&self, client: &EsClient) -> bool {
        let decided = *self
            .decided
            .get_or_init(|| async {
                if self.engine == Engine::Opensearch {
                    return false;
                }
                let named = match client.root().await {
                    Ok(reply) if (200..300).contains(&reply.status) && !reply.truncated => {
                        super::health::engine(&reply.body)
                    }
                    _ => None,
                };
                takes_require_data_stream(named.as_ref())
            })
            .await;
        decided && !self.refused.load(Ordering::Relaxed)
    }
}

/// Whether an engine named by `GET /` (`None`: it did not say) takes
/// `require_data_stream`: Elasticsearch 8.13+, and, unknown, tried.
fn takes_require_data_stream(named: Option<&(String, String)>) -> bool {
    let Some((distribution, version)) = named else {
        return true;
    };
    if distribution != "elasticsearch" {
        return false;
    }
    let mut numbers = version
        .split(['.', '-'])
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let major = numbers.next().unwrap_or(0);
    let minor = numbers.next().unwrap_or(0);
    (major, minor) >= (8, 13)
}

/// `400` for the whole request naming the parameter: `request [/_bulk]
/// contains unrecognized parameter: [require_data_stream]` (Elasticsearch
/// before 8.13, OpenSearch).
fn refuses_require_data_stream(reply: &Reply) -> bool {
    reply.status == 400
        && !reply.truncated
        && String::from_utf8_lossy(&reply.body).contains("require_data_stream")
}

/// The Elasticsearch client, holding each bulk request until the setup's
/// first pass is over.
pub struct GatedClient {
    pub client: Arc<EsClient>,
    pub first_pass: watch::Receiver<bool>,
    /// In data_stream mode.
    pub require_data_stream: Option<RequireDataStream>,
    /// For the log line when the engine refuses `require_data_stream`.
    pub id: String,
}

impl Backend for GatedClient {
    fn bulk(&self, body: Bytes) -> BoxFuture<'_, Result<Reply, Failure>> {
        Box::pin(async move {
            let Some(flag) = &self.require_data_stream else {
                return self.client.bulk(body).await;
            };
            if !flag.wanted(&self.client).await {
                return self.client.bulk(body).await;
            }
            let reply = self
                .client
                .bulk_to(BULK_REQUIRING_A_DATA_STREAM, body.clone())
                .await?;
            if !refuses_require_data_stream(&reply) {
                return Ok(reply);
            }
            if !flag.refused.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    component = %self.id,
                    "this engine does not take require_data_stream (Elasticsearch 8.13+ does; OpenSearch does not): bulk requests go without it, and a data stream whose index template is missing becomes a plain index of its name — check that the template is installed (docs/elasticsearch.md, section Data streams)"
                );
            }
            self.client.bulk(body).await
        })
    }

    fn prepare(&self) -> BoxFuture<'_, Result<(), Failure>> {
        Box::pin(async move {
            let mut first_pass = self.first_pass.clone();
            // A closed channel (setup gone) counts as done.
            let _ = first_pass.wait_for(|done| *done).await;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::elasticsearch::index::IndexOptions;
    use chrono::TimeZone;
    use std::collections::BTreeMap;

    fn plan(
        template: Option<&str>,
        allowed: &[(&str, &[&str])],
        ahead_minutes: u64,
    ) -> Result<IndexPlan, String> {
        let allowed_values: BTreeMap<String, Vec<String>> = allowed
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect();
        let router = IndexRouter::new(&IndexOptions {
            template,
            prefix: "c.rum",
            data_stream: false,
            fallback: "other",
            allowed_values: &allowed_values,
        })
        .map_err(|(_, e)| e)?;
        let fields: Vec<(TemplateField, Vec<String>)> = allowed_values
            .iter()
            .filter_map(|(k, v)| Some((TemplateField::parse(k)?, v.clone())))
            .collect();
        IndexPlan::new(
            router,
            template,
            &fields,
            Duration::from_secs(ahead_minutes * 60),
        )
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn before_midnight_tomorrows_names_are_due() {
        let p = plan(None, &[], 10).unwrap();
        let early = Utc.with_ymd_and_hms(2026, 3, 7, 23, 40, 0).unwrap();
        assert_eq!(
            p.due(&early),
            set(&[
                "c.rum.csp.reporting-2026.03.07",
                "c.rum.csp.uri-2026.03.07",
                "c.rum.metrics-2026.03.07"
            ])
        );
        let late = Utc.with_ymd_and_hms(2026, 3, 7, 23, 51, 0).unwrap();
        let due = p.due(&late);
        assert_eq!(due.len(), 6);
        assert!(due.contains("c.rum.metrics-2026.03.08"), "{due:?}");
    }

    #[test]
    fn templated_names_cover_every_allowed_value_and_the_fallback() {
        let p = plan(
            Some("rum-{{ service.name }}-%Y.%m"),
            &[("service.name", &["shop", "blog"])],
            10,
        )
        .unwrap();
        let at = Utc.with_ymd_and_hms(2026, 3, 7, 12, 0, 0).unwrap();
        assert_eq!(
            p.names_at(&at),
            set(&["rum-blog-2026.03", "rum-other-2026.03", "rum-shop-2026.03"])
        );
        // Monthly names: due a month ahead only in the last minutes of the month.
        let end = Utc.with_ymd_and_hms(2026, 3, 31, 23, 55, 0).unwrap();
        assert!(p.due(&end).contains("rum-shop-2026.04"));
    }

    #[test]
    fn require_data_stream_goes_to_elasticsearch_8_13_on_and_to_engines_that_do_not_say() {
        let named = |d: &str, v: &str| Some((d.to_owned(), v.to_owned()));
        for (engine, takes) in [
            (named("elasticsearch", "8.13.0"), true),
            (named("elasticsearch", "8.15.0"), true),
            (named("elasticsearch", "9.0.0-SNAPSHOT"), true),
            (named("elasticsearch", "8.12.2"), false),
            (named("elasticsearch", "7.17.0"), false),
            (named("opensearch", "2.13.0"), false),
            (named("quickwit", "0.8.2"), false),
            (None, true),
        ] {
            assert_eq!(
                takes_require_data_stream(engine.as_ref()),
                takes,
                "{engine:?}"
            );
        }
        let reply = |status: u16, body: &str| Reply {
            status,
            retry_after: None,
            body: Bytes::from(body.to_owned()),
            truncated: false,
            wire_bytes: 0,
        };
        assert!(refuses_require_data_stream(&reply(
            400,
            r#"{"error":{"type":"illegal_argument_exception","reason":"request [/_bulk] contains unrecognized parameter: [require_data_stream]"},"status":400}"#
        )));
        assert!(!refuses_require_data_stream(&reply(
            400,
            r#"{"error":{"type":"illegal_argument_exception","reason":"Malformed action/metadata line [1]"},"status":400}"#
        )));
        assert!(!refuses_require_data_stream(&reply(
            200,
            "require_data_stream"
        )));
    }

    #[test]
    fn too_many_names_are_refused() {
        let err = plan(
            Some("rum-{{ rum.type }}-{{ service.name }}-%Y.%m.%d"),
            &[("service.name", &["a", "b", "c", "d"])],
            10,
        )
        .err()
        .unwrap();
        assert!(err.contains("at most 32"), "{err}");
    }
}
