//! The delivery loop against a scripted Elasticsearch, with paused time:
//! what is sent, re-sent, counted and dead-lettered, and how much the sink
//! admits while Elasticsearch does not answer.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use super::dead_letter::DeadLetters;
use super::index::{IndexOptions, IndexRouter};
use super::metrics::SinkMetrics;
use super::request::{Backend, BoxFuture, Reply};
use super::retry::{Backoff, Failure};
use super::service::{run, Settings, Shared};
use crate::event::{Batch, Event};
use crate::http::server::Health;
use crate::shutdown::ShutdownTrigger;
use crate::telemetry::{ComponentMetrics, Registry};
use crate::topology::buffer::{buffer, BufferSender, Fanout, SendError};

type Respond = dyn Fn(usize, &[String]) -> Result<Reply, Failure> + Send + Sync;

/// Records every bulk request (the `_id`s in it) and answers from a script.
struct ScriptedEs {
    calls: Mutex<Vec<Vec<String>>>,
    respond: Box<Respond>,
    /// When set, every request waits for a permit first (a hung cluster).
    gate: Option<Arc<Semaphore>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl ScriptedEs {
    fn new(
        respond: impl Fn(usize, &[String]) -> Result<Reply, Failure> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            calls: Mutex::new(Vec::new()),
            respond: Box::new(respond),
            gate: None,
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        })
    }

    fn gated(gate: Arc<Semaphore>) -> Arc<Self> {
        Arc::new(Self {
            calls: Mutex::new(Vec::new()),
            respond: Box::new(|_, ids| Ok(answer(&vec![201; ids.len()]))),
            gate: Some(gate),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        })
    }

    fn calls(&self) -> Vec<Vec<String>> {
        self.calls.lock().unwrap().clone()
    }
}

fn ids_of(body: &[u8]) -> Vec<String> {
    body.split(|b| *b == b'\n')
        .step_by(2)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let action: Value = serde_json::from_slice(l).expect("action line");
            action["create"]["_id"].as_str().expect("_id").to_owned()
        })
        .collect()
}

impl Backend for ScriptedEs {
    fn bulk(&self, body: Bytes) -> BoxFuture<'_, Result<Reply, Failure>> {
        Box::pin(async move {
            let ids = ids_of(&body);
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(now, Ordering::SeqCst);
            if let Some(gate) = &self.gate {
                let _ = gate.acquire().await.map(|p| p.forget());
            }
            let call = {
                let mut calls = self.calls.lock().unwrap();
                calls.push(ids.clone());
                calls.len() - 1
            };
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            (self.respond)(call, &ids)
        })
    }
}

/// A 200 bulk answer with these item statuses, as Elasticsearch writes it.
fn answer(statuses: &[u16]) -> Reply {
    let items: Vec<Value> = statuses
        .iter()
        .map(|&status| match status {
            200..=299 => json!({"create": {"_index": "i", "_id": "x", "_version": 1, "result": "created", "status": status}}),
            409 => json!({"create": {"_index": "i", "_id": "x", "status": 409, "error": {"type": "version_conflict_engine_exception", "reason": "document already exists"}}}),
            429 => json!({"create": {"_index": "i", "_id": "x", "status": 429, "error": {"type": "es_rejected_execution_exception", "reason": "rejected execution"}}}),
            400 => json!({"create": {"_index": "i", "_id": "x", "status": 400, "error": {"type": "document_parsing_exception", "reason": "failed to parse field [rum.seq] of type [long]"}}}),
            other => json!({"create": {"_index": "i", "_id": "x", "status": other, "error": {"type": "x", "reason": "y"}}}),
        })
        .collect();
    let errors = statuses.iter().any(|s| !(200..300).contains(s));
    reply(200, json!({"took": 1, "errors": errors, "items": items}))
}

fn reply(status: u16, body: Value) -> Reply {
    let body = Bytes::from(body.to_string());
    Reply {
        status,
        retry_after: None,
        wire_bytes: 0,
        body,
        truncated: false,
    }
}

fn event(i: usize) -> Event {
    Event::from(json!({
        "@timestamp": "2026-03-07T10:00:00.000Z",
        "session": {"id": "s1"},
        "view": {"id": "v1"},
        "rum": {"type": "action", "seq": i},
    }))
}

fn id_of(i: usize) -> String {
    let e = event(i);
    let mut source = Vec::new();
    e.write_json_untimed(&mut source);
    super::encoder::document_id(&e, &source)
}

struct Harness {
    registry: Arc<Registry>,
    health: Arc<Health>,
    shutdown: ShutdownTrigger,
    tx: BufferSender,
    task: tokio::task::JoinHandle<()>,
    dir: tempfile::TempDir,
}

fn settings() -> Settings {
    Settings {
        max_events: 10,
        max_bytes: 1024 * 1024,
        timeout: Duration::from_millis(100),
        concurrency: 2,
        backoff: Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
        },
        max_retry_duration: Duration::from_secs(60),
        shutdown_deadline: Duration::from_secs(5),
    }
}

/// What `run` is given besides its input: the sink's shared state (its
/// counters in `registry`, its dead letters in `dir`) and its index router.
fn sink_parts(
    backend: Arc<dyn Backend>,
    settings: &Settings,
    registry: &Arc<Registry>,
    health: Arc<Health>,
    dir: &tempfile::TempDir,
) -> (Arc<Shared>, IndexRouter) {
    let metrics = SinkMetrics::new(ComponentMetrics::new(
        registry,
        "es",
        "sink",
        "elasticsearch",
    ));
    let shared = Arc::new(Shared::new(
        "es".into(),
        backend,
        metrics,
        DeadLetters::new(Some(dir.path().join("dead.ndjson"))),
        health,
        settings,
    ));
    let router = IndexRouter::new(&IndexOptions {
        template: None,
        prefix: "c.rum",
        data_stream: false,
        fallback: "other",
        allowed_values: &BTreeMap::new(),
    })
    .unwrap();
    (shared, router)
}

fn start(backend: Arc<dyn Backend>, settings: Settings, buffer_events: usize) -> Harness {
    let registry = Registry::new();
    let health = Arc::new(Health::default());
    let dir = tempfile::tempdir().unwrap();
    let (shared, router) = sink_parts(backend, &settings, &registry, health.clone(), &dir);
    let (tx, rx) = buffer(buffer_events, usize::MAX);
    let shutdown = ShutdownTrigger::new();
    let task = tokio::spawn(run(
        shared,
        router,
        settings,
        rx.into(),
        shutdown.subscribe(),
    ));
    Harness {
        registry,
        health,
        shutdown,
        tx,
        task,
        dir,
    }
}

impl Harness {
    async fn send(&self, range: std::ops::Range<usize>) {
        let batch: Batch = range.map(event).collect();
        self.tx.send(batch).await.unwrap();
    }

    /// Closes the input and waits for the sink to finish.
    async fn finish(self) -> Finished {
        let Harness {
            registry,
            tx,
            task,
            dir,
            ..
        } = self;
        drop(tx);
        task.await.unwrap();
        let text = std::fs::read_to_string(dir.path().join("dead.ndjson")).unwrap_or_default();
        let dead = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        Finished { registry, dead }
    }
}

struct Finished {
    registry: Arc<Registry>,
    dead: Vec<Value>,
}

impl Finished {
    fn counter(&self, name: &str) -> u64 {
        self.registry.counter_sum(name, &[("component_id", "es")])
    }
    fn dead_ids(&self) -> Vec<String> {
        self.dead
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_owned())
            .collect()
    }
}

#[tokio::test(start_paused = true)]
async fn batches_by_max_events_and_flushes_the_rest_on_close() {
    let es = ScriptedEs::new(|_, ids| Ok(answer(&vec![201; ids.len()])));
    let h = start(es.clone(), settings(), 100);
    h.send(0..25).await;
    let done = h.finish().await;
    let sizes: Vec<usize> = es.calls().iter().map(Vec::len).collect();
    assert_eq!(sizes, [10, 10, 5]);
    let all: Vec<String> = es.calls().concat();
    assert_eq!(all, (0..25).map(id_of).collect::<Vec<_>>());
    assert_eq!(done.counter("component_sent_events_total"), 25);
    assert_eq!(done.counter("component_received_events_total"), 25);
    assert!(done.dead.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_partial_batch_waits_for_the_timeout() {
    let es = ScriptedEs::new(|_, ids| Ok(answer(&vec![201; ids.len()])));
    let h = start(es.clone(), settings(), 100);
    h.send(0..3).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(es.calls().is_empty(), "sent before batch.timeout_ms");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(es.calls().len(), 1);
    assert_eq!(es.calls()[0].len(), 3);
    h.finish().await;
}

#[tokio::test(start_paused = true)]
async fn only_failed_items_are_sent_again() {
    // First answer: items 1 and 3 rejected with 429; then all fine.
    let es = ScriptedEs::new(|call, ids| {
        Ok(match call {
            0 => answer(&[201, 429, 201, 429, 201]),
            _ => answer(&vec![201; ids.len()]),
        })
    });
    let h = start(
        es.clone(),
        Settings {
            max_events: 5,
            ..settings()
        },
        100,
    );
    h.send(0..5).await;
    let done = h.finish().await;
    let calls = es.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1], [id_of(1), id_of(3)]);
    assert_eq!(done.counter("component_sent_events_total"), 5);
    assert_eq!(done.counter("elasticsearch_retried_events_total"), 2);
    assert!(done.dead.is_empty());
}

#[tokio::test(start_paused = true)]
async fn mapping_errors_go_to_the_dead_letter_file_once() {
    let es = ScriptedEs::new(|call, ids| {
        Ok(match call {
            0 => answer(&[201, 400, 201, 400]),
            _ => answer(&vec![201; ids.len()]),
        })
    });
    let h = start(
        es.clone(),
        Settings {
            max_events: 4,
            ..settings()
        },
        100,
    );
    h.send(0..4).await;
    let done = h.finish().await;
    assert_eq!(es.calls().len(), 1, "permanent failures are not retried");
    assert_eq!(done.dead_ids(), [id_of(1), id_of(3)]);
    assert_eq!(done.dead[0]["error"]["type"], "document_parsing_exception");
    assert_eq!(done.dead[0]["error"]["status"], 400);
    assert_eq!(done.dead[0]["document"]["rum"]["seq"], 1);
    assert_eq!(
        done.dead[0]["index"],
        "c.rum.metrics-".to_owned() + &chrono::Utc::now().format("%Y.%m.%d").to_string()
    );
    assert_eq!(done.counter("component_sent_events_total"), 2);
    assert_eq!(done.counter("elasticsearch_dead_lettered_events_total"), 2);
}

#[tokio::test(start_paused = true)]
async fn conflicts_count_as_delivered() {
    let es = ScriptedEs::new(|_, _| Ok(answer(&[409, 201])));
    let h = start(
        es.clone(),
        Settings {
            max_events: 2,
            ..settings()
        },
        100,
    );
    h.send(0..2).await;
    let done = h.finish().await;
    assert_eq!(es.calls().len(), 1);
    assert_eq!(done.counter("component_sent_events_total"), 2);
    assert_eq!(done.counter("elasticsearch_duplicate_events_total"), 1);
    assert!(done.dead.is_empty());
}

/// `/health` is public (SECURITY.md: its `degraded:` lines carry "no
/// secrets, no URLs"): it says how writing fails (status and type), while
/// the reason, which names the endpoint (reqwest quotes the request's URL)
/// or the user Elasticsearch refused, stays in the log.
#[tokio::test(start_paused = true)]
async fn health_says_how_writing_fails_but_names_no_endpoint_or_user() {
    let es = ScriptedEs::new(|call, ids| {
        match call {
        0 => Err(Failure::new(
            None,
            "connection",
            "error sending request for url (http://es-7.corp.internal:9200/_bulk): Connection refused",
        )),
        1 => Ok(reply(
            401,
            json!({"error": {"type": "security_exception", "reason": "unable to authenticate user [rum_writer] for REST request [/_bulk]"}, "status": 401}),
        )),
        _ => Ok(answer(&vec![201; ids.len()])),
    }
    });
    let h = start(es.clone(), settings(), 100);
    let health = h.health.clone();
    h.send(0..3).await;
    let mut seen = Vec::new();
    while es.calls().len() < 3 {
        if let Some(reason) = health.degraded().get("es") {
            if seen.last() != Some(reason) {
                seen.push(reason.clone());
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        seen,
        [
            "cannot write to Elasticsearch (connection); retrying",
            "cannot write to Elasticsearch (401 security_exception); retrying",
        ]
    );
    let done = h.finish().await;
    assert_eq!(done.counter("component_sent_events_total"), 3);
    assert!(health.degraded().is_empty(), "recovered");
}

#[tokio::test(start_paused = true)]
async fn whole_request_failures_retry_until_the_cluster_answers() {
    let es = ScriptedEs::new(|call, ids| match call {
        0 => Err(Failure::new(None, "connection", "Connection refused")),
        1 => Ok(reply(
            503,
            json!({"error": {"type": "unavailable_shards_exception", "reason": "no shards"}, "status": 503}),
        )),
        2 => Ok(reply(
            429,
            json!({"error": {"type": "es_rejected_execution_exception", "reason": "busy"}, "status": 429}),
        )),
        _ => Ok(answer(&vec![201; ids.len()])),
    });
    let h = start(
        es.clone(),
        Settings {
            max_events: 3,
            ..settings()
        },
        100,
    );
    let health = h.health.clone();
    h.send(0..3).await;
    // While it fails, /health lists the sink as degraded.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let degraded = health.degraded();
    assert!(
        degraded
            .get("es")
            .is_some_and(|r| r.contains("(connection)")),
        "{degraded:?}"
    );
    let done = h.finish().await;
    assert_eq!(es.calls().len(), 4);
    assert!(es.calls().iter().all(|c| c.len() == 3));
    assert_eq!(done.counter("component_sent_events_total"), 3);
    assert_eq!(done.counter("elasticsearch_bulk_retries_total"), 3);
    assert!(health.degraded().is_empty(), "recovered");
}

#[tokio::test(start_paused = true)]
async fn a_batch_failing_past_max_duration_is_dead_lettered() {
    let es = ScriptedEs::new(|_, _| Err(Failure::new(None, "connection", "Connection refused")));
    let s = Settings {
        max_events: 2,
        max_retry_duration: Duration::from_secs(30),
        ..settings()
    };
    let h = start(es.clone(), s, 100);
    let dead_file = h.dir.path().join("dead.ndjson");
    h.send(0..2).await;
    // Backoff never waits past max_backoff (5 s), so it gives up in [25 s, 30 s].
    tokio::time::sleep(Duration::from_secs(24)).await;
    assert!(
        !dead_file.exists(),
        "dead-lettered before retry.max_duration_secs"
    );
    let tries = es.calls().len();
    assert!(tries >= 5, "{tries} tries");
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(
        dead_file.exists(),
        "not dead-lettered after retry.max_duration_secs"
    );
    let done = h.finish().await;
    assert_eq!(done.dead_ids(), [id_of(0), id_of(1)]);
    assert_eq!(done.dead[0]["error"]["type"], "retries_exhausted");
    assert!(done.dead[0]["error"]["reason"]
        .as_str()
        .unwrap()
        .contains("Connection refused"));
    assert_eq!(done.counter("component_sent_events_total"), 0);
}

#[tokio::test(start_paused = true)]
async fn too_large_bodies_are_split_in_halves() {
    let es = ScriptedEs::new(|_, ids| {
        Ok(if ids.len() > 2 {
            reply(413, json!({"error": "Request Entity Too Large"}))
        } else {
            answer(&vec![201; ids.len()])
        })
    });
    let h = start(
        es.clone(),
        Settings {
            max_events: 8,
            ..settings()
        },
        100,
    );
    h.send(0..8).await;
    let done = h.finish().await;
    let delivered: Vec<String> = es
        .calls()
        .into_iter()
        .filter(|c| c.len() <= 2)
        .flatten()
        .collect();
    assert_eq!(delivered, (0..8).map(id_of).collect::<Vec<_>>());
    assert_eq!(done.counter("component_sent_events_total"), 8);
}

#[tokio::test(start_paused = true)]
async fn a_hung_cluster_admits_exactly_the_slots_plus_one_batch_plus_the_buffer() {
    let gate = Arc::new(Semaphore::new(0));
    let es = ScriptedEs::gated(gate.clone());
    // concurrency 2 × 10 events in flight, one full batch waiting for a slot,
    // and the input buffer's 30 events.
    let h = start(es.clone(), settings(), 30);
    let fanout = Fanout::new(vec![h.tx.clone()], Default::default(), Default::default());
    let mut admitted = 0;
    for i in 0..200 {
        match fanout
            .send_within(vec![event(i)], Duration::from_millis(50))
            .await
        {
            Ok(()) => admitted += 1,
            Err(e) => assert_eq!(e, SendError::Timeout),
        }
    }
    assert_eq!(admitted, 2 * 10 + 10 + 30);
    assert_eq!(es.max_in_flight.load(Ordering::SeqCst), 2);
    // The cluster comes back: everything admitted is delivered, once.
    gate.add_permits(1000);
    drop(fanout);
    let done = h.finish().await;
    let mut ids: Vec<String> = es.calls().concat();
    assert_eq!(ids.len(), admitted);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), admitted);
    assert_eq!(done.counter("component_sent_events_total"), admitted as u64);
}

#[tokio::test(start_paused = true)]
async fn shutdown_dead_letters_what_cannot_be_delivered_in_time() {
    let es = ScriptedEs::new(|_, _| Err(Failure::new(None, "connection", "Connection refused")));
    let h = start(es.clone(), settings(), 100);
    h.send(0..35).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    h.shutdown.begin();
    let started = tokio::time::Instant::now();
    let done = h.finish().await;
    assert!(
        started.elapsed() <= Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    let mut dead = done.dead_ids();
    dead.sort();
    let mut expected: Vec<String> = (0..35).map(id_of).collect();
    expected.sort();
    assert_eq!(
        dead, expected,
        "every accepted document is in the dead-letter file"
    );
    assert!(done.dead.iter().all(|d| d["error"]["type"] == "shutdown"));
}

#[tokio::test(start_paused = true)]
async fn a_partial_batch_goes_out_when_shutdown_begins_not_at_its_timeout() {
    // batch.timeout_ms past the drain deadline (prod.toml has 10 s against 5 s),
    // and the input still open (a client still uploading) past the deadline.
    let es = ScriptedEs::new(|_, ids| Ok(answer(&vec![201; ids.len()])));
    let h = start(
        es.clone(),
        Settings {
            max_events: 100,
            timeout: Duration::from_secs(10),
            ..settings()
        },
        100,
    );
    h.send(0..3).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    h.shutdown.begin();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(es.calls().concat(), (0..3).map(id_of).collect::<Vec<_>>());
    // What arrives while draining goes out as soon as nothing more is ready.
    h.send(3..5).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(es.calls().len(), 2);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let done = h.finish().await;
    assert_eq!(done.counter("component_sent_events_total"), 5);
    assert!(done.dead.is_empty(), "{:?}", done.dead);
}

#[tokio::test(start_paused = true)]
async fn documents_of_a_delivery_task_that_panics_are_counted_as_discarded() {
    // Three stored, two retried; the retry panics. The two are counted,
    // the three are not counted twice.
    let es = ScriptedEs::new(|call, ids| {
        assert_eq!(call, 0, "a bug in the delivery of a retry");
        let mut statuses = vec![201; ids.len()];
        statuses[3..].fill(429);
        Ok(answer(&statuses))
    });
    let h = start(
        es,
        Settings {
            max_events: 5,
            ..settings()
        },
        100,
    );
    h.send(0..5).await;
    let done = h.finish().await;
    assert_eq!(done.counter("component_sent_events_total"), 3);
    assert_eq!(
        done.registry.counter_sum(
            "component_discarded_events_total",
            &[("component_id", "es"), ("intentional", "false")]
        ),
        2
    );
}

/// A sink stopped where it is (aborted at the shutdown timeout, a dead
/// letter write that hangs on a full network disk): what it had taken in
/// and neither delivered nor dead-lettered is counted as discarded — the
/// batches in flight, the one waiting for a slot, the one being filled —
/// so its counters add up.
#[tokio::test(start_paused = true)]
async fn a_sink_stopped_mid_work_counts_every_document_it_held() {
    let gate = Arc::new(Semaphore::new(0));
    let es = ScriptedEs::gated(gate.clone());
    let settings = Settings {
        concurrency: 1,
        ..settings()
    };
    let h = start(es.clone(), settings, 100);
    // 10 in flight, 10 waiting for the slot, 5 more behind them.
    h.send(0..25).await;
    while es.in_flight.load(Ordering::SeqCst) < 1 || h.tx.buffered_events() > 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    h.task.abort();
    assert!(h.task.await.unwrap_err().is_cancelled());
    // The delivery task goes when the runtime gets to its abort.
    tokio::time::sleep(Duration::from_millis(1)).await;
    let counter = |name: &str| h.registry.counter_sum(name, &[("component_id", "es")]);
    assert_eq!(counter("component_received_events_total"), 25);
    assert_eq!(counter("component_sent_events_total"), 0);
    assert_eq!(counter("elasticsearch_dead_lettered_events_total"), 0);
    assert_eq!(counter("component_discarded_events_total"), 25);
}

/// A delivery task spawned in the same turn that the sink stops in (a
/// panic further along its input batch, or an abort before the runtime
/// got to the task) never ran: its batch was settled by the run loop as
/// handed on, and the task, cancelled before its first poll, never made
/// the guard that counts it, so those documents were received and
/// neither sent, dead-lettered nor discarded.
#[tokio::test(start_paused = true)]
async fn a_delivery_task_stopped_before_it_ran_counts_its_documents() {
    let registry = Registry::new();
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        concurrency: 1,
        ..settings()
    };
    let (shared, router) = sink_parts(
        ScriptedEs::gated(Arc::new(Semaphore::new(0))),
        &settings,
        &registry,
        Arc::new(Health::default()),
        &dir,
    );
    let (tx, rx) = buffer(100, usize::MAX);
    tx.send((0..25).map(event).collect()).await.unwrap();
    let shutdown = ShutdownTrigger::new();
    let mut running = Box::pin(run(
        shared,
        router,
        settings,
        rx.into(),
        shutdown.subscribe(),
    ));
    // One turn: the first 10 go to a task spawned (not yet run), the next
    // 10 wait for its slot; then the sink is stopped where it is.
    assert!(futures::poll!(&mut running).is_pending());
    drop(running);
    // The cancelled task is dropped when the runtime gets to it.
    tokio::time::sleep(Duration::from_millis(1)).await;
    let counter = |name: &str| registry.counter_sum(name, &[("component_id", "es")]);
    assert_eq!(counter("component_received_events_total"), 25);
    assert_eq!(counter("component_sent_events_total"), 0);
    assert_eq!(counter("component_discarded_events_total"), 25);
}
