//! An in-process Elasticsearch double for tests and benchmarks (Elasticsearch
//! itself cannot be installed here). It speaks `_bulk` as Elastic documents it:
//! NDJSON pairs of action line + source line (`create`, `index`, `delete`),
//! the body terminated by a newline, `Content-Type: application/x-ndjson` or
//! `application/json`, optional `Content-Encoding: gzip`; the answer is
//! `{"took", "errors", "items": [{"<action>": {"_index", "_id", "_version",
//! "result", "_shards", "_seq_no", "_primary_term", "status"}}]}`, failed items
//! carrying `"error": {"type", "reason"}` and their own `status` (409
//! `version_conflict_engine_exception` for a `create` whose `_id` exists).
//! `GET /` answers the version document; template and ILM PUTs are
//! acknowledged and kept (an index template naming a component template
//! that does not exist is refused, as Elasticsearch and OpenSearch do);
//! `PUT /{index}` creates an index (`400 resource_already_exists_exception`
//! if it exists).
//!
//! Data streams: a first write to a name no index holds makes a data stream
//! when the installed index template of highest priority matching it has
//! `data_stream`, else a plain index. `?require_data_stream=true` is answered
//! as Elasticsearch 8.13+ documents it, per item: `404
//! index_not_found_exception` ("... requires a data stream, but no matching
//! index template with data stream template was found for it") for a missing
//! name, `404 resource_not_found_exception` ("[require_data_stream] request
//! flag is [true] and [x] is not a data stream") for a plain index; engines
//! that do not know the parameter (OpenSearch, Elasticsearch before 8.13 —
//! `elasticsearch(Some("8.12.2"))`) refuse the whole request with `400
//! illegal_argument_exception` "contains unrecognized parameter".
//!
//! As OpenSearch (`opensearch(Some("2.13.0"))`) it answers `GET /` with
//! OpenSearch's root document and judges templates as OpenSearch does: no
//! `flattened` type (`flat_object` from 2.7, which takes no parameters), no
//! ILM API, no `index.lifecycle.name` setting.
//!
//! Knobs make it misbehave: whole-request statuses (429, 503...), hanging
//! past the client's timeout (before or after storing), dropped connections,
//! chosen items failing (429 a number of times, 400 mapping errors, 409),
//! Quickwit-style answers, a body size cap (413), required credentials, data
//! streams, no index auto-create (items for a missing index answer `404
//! index_not_found_exception`), template APIs that fail (Quickwit's `404 Route
//! not found`, a write-only key's `403`). It counts stored documents by `_id` and records every request.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How the whole `_bulk` endpoint misbehaves (other paths are unaffected).
#[derive(Debug, Clone, PartialEq)]
pub enum Outage {
    /// Answer every bulk request with this status and an Elasticsearch error body.
    Status(u16),
    /// Never answer (until the client gives up), without storing anything.
    Hang,
    /// Store the documents, then never answer: the client must re-send and
    /// get 409s — the case that duplicates data without `_id`s.
    HangAfterStore,
    /// Close the connection without an answer.
    Drop,
}

/// Bulk answers padded far past any sane size (leading whitespace, so the
/// answer stays valid JSON): a client that reads bodies whole allocates it all.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HugeAnswers {
    /// Whitespace before the real answer.
    pub padding: usize,
    /// Announce the length in `Content-Length` (else chunked, length unknown).
    pub content_length: bool,
    /// How many bulk answers get the padding (documents are stored as usual).
    pub times: usize,
}

/// How one chosen document fails.
#[derive(Debug, Clone, PartialEq)]
pub enum ItemFault {
    /// `429 es_rejected_execution_exception` for its first `times` attempts.
    Rejected { times: usize },
    /// `400 mapper_parsing_exception`, every time.
    Mapping,
    /// `409 version_conflict_engine_exception`, every time (as if stored by someone else).
    Conflict,
}

/// One request as the double saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// The query string, if any (`require_data_stream=true`).
    pub query: Option<String>,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    /// `(action, _index, _id)` of each bulk item, in order.
    pub actions: Vec<(String, String, String)>,
    /// Body bytes as received (compressed if it was).
    pub wire_bytes: usize,
    pub status: u16,
}

#[derive(Default)]
struct Knobs {
    outage: Option<Outage>,
    /// Keyed by a document field value: `(path, value)` → fault.
    faults: Vec<((String, Value), ItemFault)>,
    quickwit: bool,
    max_body_bytes: Option<usize>,
    /// Exact `Authorization` header required, if any.
    required_auth: Option<String>,
    /// Index names that are data streams: only `create`, `@timestamp` required.
    data_streams: Vec<String>,
    /// Do not keep sources (benchmarks): ids only.
    count_only: bool,
    /// Path prefix the double is served under (`/api/v1/_elastic`).
    prefix: String,
    /// `action.auto_create_index: false`: writes need `PUT /{index}` first.
    no_auto_create: bool,
    /// Status for every template / ILM PUT (404 or 403), if they fail.
    template_status: Option<u16>,
    huge_answers: Option<HugeAnswers>,
    /// Answer as OpenSearch of this version.
    opensearch: Option<String>,
    /// Answer as Elasticsearch of this version (`None`: 8.15.0).
    elasticsearch: Option<String>,
    /// Status for `GET /` (403: no `monitor` privilege), if it fails.
    root_status: Option<u16>,
    /// Status for `GET _index_template/{name}` (429, 503: overloaded), if
    /// it fails.
    template_lookup_status: Option<u16>,
}

#[derive(Default)]
struct Store {
    /// index → _id → (version, source)
    indices: BTreeMap<String, BTreeMap<String, (u64, Value)>>,
    /// Indices created by `PUT /{index}` (with or without documents).
    created: BTreeSet<String>,
    /// Creates refused as 409 because the `_id` existed.
    conflicts: u64,
    /// Attempts per `_id`, for `ItemFault::Rejected`.
    attempts: HashMap<String, usize>,
    seq_no: u64,
    /// Installed templates and policies: API path (`_component_template/x`) → body.
    templates: BTreeMap<String, Value>,
    /// Data streams created on a first write by an index template with
    /// `data_stream` (their documents are in `indices` under their name).
    streams: BTreeSet<String>,
}

struct State {
    knobs: Mutex<Knobs>,
    store: Mutex<Store>,
    seen: Mutex<Vec<Seen>>,
    /// Requests being handled right now, and the most at once.
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Documents accepted by bulk requests (benchmarks, count_only or not).
    bulk_docs: AtomicU64,
    bulk_requests: AtomicU64,
    bulk_bytes: AtomicU64,
    /// Bytes of padded answers the client has pulled from the double.
    padded_bytes_sent: Arc<AtomicU64>,
    outage_changed: watch::Sender<u64>,
}

pub struct EsDouble {
    pub addr: SocketAddr,
    state: Arc<State>,
    stop: Option<watch::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EsDouble {
    pub fn start() -> EsDouble {
        Self::start_with_prefix("")
    }

    /// Serves the API under a path prefix, like Quickwit's `/api/v1/_elastic`.
    pub fn start_with_prefix(prefix: &str) -> EsDouble {
        let (outage_changed, _) = watch::channel(0);
        let state = Arc::new(State {
            knobs: Mutex::new(Knobs {
                prefix: prefix.trim_end_matches('/').to_owned(),
                ..Knobs::default()
            }),
            store: Mutex::new(Store::default()),
            seen: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            bulk_docs: AtomicU64::new(0),
            bulk_requests: AtomicU64::new(0),
            bulk_bytes: AtomicU64::new(0),
            padded_bytes_sent: Arc::new(AtomicU64::new(0)),
            outage_changed,
        });
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = watch::channel(false);
        let serving = state.clone();
        // Its own thread and runtime: independent of the test's runtime (and
        // of paused time), and measured apart from the sink in benchmarks.
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
                addr_tx
                    .send(listener.local_addr().expect("addr"))
                    .expect("report addr");
                serve(listener, serving, stop_rx).await;
            });
        });
        let addr = addr_rx.recv().expect("double started");
        EsDouble {
            addr,
            state,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        let prefix = self.state.knobs.lock().unwrap().prefix.clone();
        format!("http://{}{}", self.addr, prefix)
    }

    pub fn set_outage(&self, outage: Option<Outage>) {
        self.state.knobs.lock().unwrap().outage = outage;
        self.state.outage_changed.send_modify(|n| *n += 1);
    }

    /// Makes documents whose field `path` equals `value` fail this way.
    pub fn fail_items(&self, path: &str, value: Value, fault: ItemFault) {
        self.state
            .knobs
            .lock()
            .unwrap()
            .faults
            .push(((path.to_owned(), value), fault));
    }

    pub fn quickwit_style(&self, on: bool) {
        self.state.knobs.lock().unwrap().quickwit = on;
    }

    pub fn max_body_bytes(&self, max: Option<usize>) {
        self.state.knobs.lock().unwrap().max_body_bytes = max;
    }

    pub fn require_auth(&self, header: Option<&str>) {
        self.state.knobs.lock().unwrap().required_auth = header.map(str::to_owned);
    }

    pub fn data_streams(&self, names: &[&str]) {
        self.state.knobs.lock().unwrap().data_streams =
            names.iter().map(|s| s.to_string()).collect();
    }

    /// Models `action.auto_create_index: false` (or an engine without it).
    pub fn no_auto_create(&self, on: bool) {
        self.state.knobs.lock().unwrap().no_auto_create = on;
    }

    /// Template and ILM PUTs answer this status (404 as Quickwit, 403 as a
    /// write-only API key), or are acknowledged (`None`).
    pub fn fail_templates(&self, status: Option<u16>) {
        self.state.knobs.lock().unwrap().template_status = status;
    }

    /// The body last acknowledged for a template or ILM path
    /// (`_index_template/rum-pipeline-es`), if any.
    pub fn template(&self, path: &str) -> Option<Value> {
        self.state
            .store
            .lock()
            .unwrap()
            .templates
            .get(path)
            .cloned()
    }

    /// Answers as OpenSearch of this version (`None`: Elasticsearch 8.15).
    pub fn opensearch(&self, version: Option<&str>) {
        self.state.knobs.lock().unwrap().opensearch = version.map(str::to_owned);
    }

    /// Answers as Elasticsearch of this version (`None`: 8.15.0). Before
    /// 8.13, `_bulk` knows no `require_data_stream` parameter.
    pub fn elasticsearch(&self, version: Option<&str>) {
        self.state.knobs.lock().unwrap().elasticsearch = version.map(str::to_owned);
    }

    /// `PUT _index_template/{name}` as an operator would send it by hand
    /// (whatever `fail_templates` says about the sink's PUTs).
    pub fn install_template(&self, name: &str, body: Value) {
        self.state
            .store
            .lock()
            .unwrap()
            .templates
            .insert(format!("_index_template/{name}"), body);
    }

    /// Names that are data streams: set by `data_streams`, or created on a
    /// first write through an index template with `data_stream`.
    pub fn streams(&self) -> Vec<String> {
        let knobs = self.state.knobs.lock().unwrap();
        let store = self.state.store.lock().unwrap();
        let mut names: BTreeSet<String> = store.streams.clone();
        names.extend(knobs.data_streams.iter().cloned());
        names.into_iter().collect()
    }

    /// Indices holding documents that are not data streams.
    pub fn plain_indices(&self) -> Vec<String> {
        let streams = self.streams();
        self.index_names()
            .into_iter()
            .filter(|name| !streams.contains(name))
            .collect()
    }

    /// `GET /` answers this status (403 as for credentials without the
    /// `monitor` cluster privilege), or the root document (`None`).
    pub fn fail_root(&self, status: Option<u16>) {
        self.state.knobs.lock().unwrap().root_status = status;
    }

    /// `GET _index_template/{name}` answers this status (429, 503: an
    /// overloaded or restarting node), or what is installed (`None`).
    pub fn fail_template_lookups(&self, status: Option<u16>) {
        self.state.knobs.lock().unwrap().template_lookup_status = status;
    }

    /// Templates and policies installed: API path (`_index_template/x`) → body.
    pub fn templates(&self) -> BTreeMap<String, Value> {
        self.state.store.lock().unwrap().templates.clone()
    }

    /// Pads the next `times` bulk answers (see [`HugeAnswers`]).
    pub fn huge_answers(&self, huge: Option<HugeAnswers>) {
        self.state.knobs.lock().unwrap().huge_answers = huge;
    }

    /// Bytes of padded answers handed to the connection so far (what the
    /// client read, plus what socket buffers hold).
    pub fn padded_bytes_sent(&self) -> u64 {
        self.state.padded_bytes_sent.load(Ordering::SeqCst)
    }

    /// Indices created by `PUT /{index}`.
    pub fn created_indices(&self) -> Vec<String> {
        self.state
            .store
            .lock()
            .unwrap()
            .created
            .iter()
            .cloned()
            .collect()
    }

    pub fn count_only(&self, on: bool) {
        self.state.knobs.lock().unwrap().count_only = on;
    }

    /// Every stored document: (index, _id, source).
    pub fn documents(&self) -> Vec<(String, String, Value)> {
        let store = self.state.store.lock().unwrap();
        store
            .indices
            .iter()
            .flat_map(|(index, docs)| {
                docs.iter()
                    .map(move |(id, (_, doc))| (index.clone(), id.clone(), doc.clone()))
            })
            .collect()
    }

    pub fn stored_count(&self) -> usize {
        self.state
            .store
            .lock()
            .unwrap()
            .indices
            .values()
            .map(BTreeMap::len)
            .sum()
    }

    pub fn index_names(&self) -> Vec<String> {
        self.state
            .store
            .lock()
            .unwrap()
            .indices
            .keys()
            .cloned()
            .collect()
    }

    /// `create`s answered 409 because the `_id` was already stored.
    pub fn conflicts(&self) -> u64 {
        self.state.store.lock().unwrap().conflicts
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    pub fn bulk_requests(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.path.ends_with("/_bulk"))
            .collect()
    }

    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// (bulk requests, documents, wire bytes) so far.
    pub fn totals(&self) -> (u64, u64, u64) {
        (
            self.state.bulk_requests.load(Ordering::Relaxed),
            self.state.bulk_docs.load(Ordering::Relaxed),
            self.state.bulk_bytes.load(Ordering::Relaxed),
        )
    }

    pub fn forget_requests(&self) {
        self.state.seen.lock().unwrap().clear();
    }
}

impl Drop for EsDouble {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(listener: TcpListener, state: Arc<State>, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|s| *s) => return,
        };
        let Ok((stream, _)) = accepted else { continue };
        let state = state.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let state = state.clone();
                async move { handle(state, request).await }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                _ = stop.wait_for(|s| *s) => {}
            }
        });
    }
}

/// Why the connection is to be closed without an answer.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped on purpose")
    }
}

impl std::error::Error for Dropped {}

type Answer = Result<Response<Full<Bytes>>, Dropped>;

/// What goes on the wire: a prepared answer, or a padded one made as it is sent.
type WireBody = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

static SPACES: [u8; 64 * 1024] = [b' '; 64 * 1024];

/// `answer` behind `huge.padding` spaces, produced only as the connection
/// takes it (so the double itself stays small), counted in `sent`.
async fn padded(
    answer: Response<Full<Bytes>>,
    huge: HugeAnswers,
    sent: Arc<AtomicU64>,
) -> Response<WireBody> {
    use futures::StreamExt as _;
    let (mut parts, body) = answer.into_parts();
    let json = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let total = huge.padding + json.len();
    let mut chunks: Vec<Bytes> = (0..huge.padding / SPACES.len())
        .map(|_| Bytes::from_static(&SPACES))
        .collect();
    chunks.push(Bytes::from_static(&SPACES[..huge.padding % SPACES.len()]));
    chunks.push(json);
    let stream = futures::stream::iter(chunks).map(move |chunk| {
        sent.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(chunk))
    });
    if huge.content_length {
        parts.headers.insert(
            http::header::CONTENT_LENGTH,
            http::HeaderValue::from(total as u64),
        );
    }
    Response::from_parts(
        parts,
        BodyExt::boxed(http_body_util::StreamBody::new(stream)),
    )
}

fn json_response(status: u16, body: Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn es_error(status: u16, error_type: &str, reason: &str) -> Response<Full<Bytes>> {
    json_response(
        status,
        json!({"error": {"root_cause": [{"type": error_type, "reason": reason}], "type": error_type, "reason": reason}, "status": status}),
    )
}

struct InFlight<'a>(&'a State);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn handle(
    state: Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<WireBody>, Dropped> {
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let _guard = InFlight(&state);
    let header = |name: http::header::HeaderName| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let mut seen = Seen {
        method: request.method().to_string(),
        path: request.uri().path().to_owned(),
        query: request.uri().query().map(str::to_owned),
        authorization: header(http::header::AUTHORIZATION),
        content_type: header(http::header::CONTENT_TYPE),
        content_encoding: header(http::header::CONTENT_ENCODING),
        actions: Vec::new(),
        wire_bytes: 0,
        status: 0,
    };
    let raw = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Err(Dropped),
    };
    seen.wire_bytes = raw.len();
    let answer = route(&state, &mut seen, raw).await;
    if let Ok(response) = &answer {
        seen.status = response.status().as_u16();
    }
    let huge = {
        let mut knobs = state.knobs.lock().unwrap();
        match &mut knobs.huge_answers {
            Some(huge) if huge.times > 0 && seen.path.ends_with("/_bulk") => {
                huge.times -= 1;
                Some(*huge)
            }
            _ => None,
        }
    };
    state.seen.lock().unwrap().push(seen);
    match (answer, huge) {
        (Ok(response), Some(huge)) => {
            Ok(padded(response, huge, state.padded_bytes_sent.clone()).await)
        }
        (answer, _) => answer.map(|r| r.map(BodyExt::boxed)),
    }
}

async fn route(state: &State, seen: &mut Seen, raw: Bytes) -> Answer {
    let (prefix, required_auth, max_body) = {
        let knobs = state.knobs.lock().unwrap();
        (
            knobs.prefix.clone(),
            knobs.required_auth.clone(),
            knobs.max_body_bytes,
        )
    };
    let Some(path) = seen.path.strip_prefix(&prefix) else {
        return Ok(es_error(404, "not_found", "no such path"));
    };
    let path = if path.is_empty() { "/" } else { path }.to_owned();
    if let Some(required) = required_auth {
        if seen.authorization.as_deref() != Some(required.as_str()) {
            let mut response = es_error(
                401,
                "security_exception",
                &format!("missing authentication credentials for REST request [{path}]"),
            );
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Basic realm=\"security\" charset=\"UTF-8\""),
            );
            return Ok(response);
        }
    }
    let body = if seen.content_encoding.as_deref() == Some("gzip") {
        let mut out = Vec::new();
        if flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .is_err()
        {
            return Ok(es_error(
                400,
                "parse_exception",
                "request body is not valid gzip",
            ));
        }
        Bytes::from(out)
    } else {
        raw
    };
    let (quickwit, opensearch, root_status, template_lookup_status, es_version) = {
        let knobs = state.knobs.lock().unwrap();
        (
            knobs.quickwit,
            knobs.opensearch.clone(),
            knobs.root_status,
            knobs.template_lookup_status,
            knobs
                .elasticsearch
                .clone()
                .unwrap_or_else(|| "8.15.0".into()),
        )
    };
    match (seen.method.as_str(), path.as_str()) {
        // Quickwit's `GET /api/v1/_elastic` names its own distribution.
        ("GET", "/") if quickwit => Ok(json_response(
            200,
            json!({
                "name": "qw-node",
                "cluster_name": "quickwit-default-cluster",
                "version": {"distribution": "quickwit", "number": "0.8.2"}
            }),
        )),
        ("GET", "/") if root_status.is_some() => {
            let status = root_status.unwrap_or(403);
            Ok(es_error(
                status,
                "security_exception",
                "no permissions for [cluster:monitor/main] and User [name=rum, backend_roles=[], requestedTenant=null]",
            ))
        }
        ("GET", "/") if opensearch.is_some() => Ok(json_response(
            200,
            json!({
                "name": "os-double",
                "cluster_name": "rum-test",
                "cluster_uuid": "double",
                "version": {"distribution": "opensearch", "number": opensearch, "build_type": "tar",
                    "build_snapshot": false, "lucene_version": "9.10.0",
                    "minimum_wire_compatibility_version": "7.10.0", "minimum_index_compatibility_version": "7.0.0"},
                "tagline": "The OpenSearch Project: https://opensearch.org/"
            }),
        )),
        ("GET", "/") => Ok(json_response(
            200,
            json!({
                "name": "es-double",
                "cluster_name": "rum-test",
                "cluster_uuid": "double",
                "version": {"number": es_version, "build_flavor": "default", "build_type": "docker", "lucene_version": "9.11.1",
                    "minimum_wire_compatibility_version": "7.17.0", "minimum_index_compatibility_version": "7.0.0"},
                "tagline": "You Know, for Search"
            }),
        )),
        ("PUT", p)
            if p.starts_with("/_index_template/")
                || p.starts_with("/_component_template/")
                || p.starts_with("/_ilm/policy/") =>
        {
            let failing = state.knobs.lock().unwrap().template_status;
            match failing {
                Some(404) => {
                    return Ok(json_response(404, json!({"message": "Route not found"})))
                }
                Some(status) => {
                    return Ok(es_error(
                        status,
                        "security_exception",
                        "action [indices:admin/index_template/put] is unauthorized for API key id [writer]",
                    ))
                }
                None => {}
            }
            let body = match serde_json::from_slice::<Value>(&body) {
                Ok(body) => body,
                Err(e) => return Ok(es_error(400, "parse_exception", &e.to_string())),
            };
            let mut store = state.store.lock().unwrap();
            if let Some(refused) = judge_template(&store, opensearch.as_deref(), p, &body) {
                return Ok(refused);
            }
            store.templates.insert(p[1..].to_owned(), body);
            Ok(json_response(200, json!({"acknowledged": true})))
        }
        ("GET", p) if p.starts_with("/_index_template/") && template_lookup_status.is_some() => {
            Ok(es_error(
                template_lookup_status.unwrap_or(503),
                "es_rejected_execution_exception",
                "rejected execution of the lookup: the node is overloaded",
            ))
        }
        // As Elasticsearch answers `GET _index_template/{name}`.
        ("GET", p) if p.starts_with("/_index_template/") => {
            let name = &p["/_index_template/".len()..];
            let store = state.store.lock().unwrap();
            match store.templates.get(&p[1..]) {
                Some(template) => Ok(json_response(
                    200,
                    json!({"index_templates": [{"name": name, "index_template": template}]}),
                )),
                None => Ok(es_error(
                    404,
                    "resource_not_found_exception",
                    &format!("index template matching [{name}] not found"),
                )),
            }
        }
        ("PUT", p) if !p[1..].contains('/') && !p[1..].is_empty() && !p.starts_with("/_") => {
            let name = &p[1..];
            let mut store = state.store.lock().unwrap();
            if store.created.contains(name) || store.indices.contains_key(name) {
                return Ok(es_error(
                    400,
                    "resource_already_exists_exception",
                    &format!("index [{name}/double] already exists"),
                ));
            }
            store.created.insert(name.to_owned());
            Ok(json_response(
                200,
                json!({"acknowledged": true, "shards_acknowledged": true, "index": name}),
            ))
        }
        ("POST" | "PUT", "/_bulk") => {
            if let Some(max) = max_body {
                if body.len() > max {
                    return Ok(json_response(
                        413,
                        json!({"error": "Request Entity Too Large"}),
                    ));
                }
            }
            bulk(state, seen, body).await
        }
        _ => Ok(es_error(
            404,
            "no_handler_found",
            &format!("no handler for {} {path}", seen.method),
        )),
    }
}

/// How the engine answers a template or policy PUT: `None` to install it,
/// or the refusal. OpenSearch (`opensearch` its version) has no ILM API,
/// no `index.lifecycle.name` setting and no `flattened` type; `flat_object`
/// came in 2.7 and takes no parameters.
fn judge_template(
    store: &Store,
    opensearch: Option<&str>,
    path: &str,
    body: &Value,
) -> Option<Response<Full<Bytes>>> {
    if let Some(version) = opensearch {
        if path.starts_with("/_ilm/") {
            return Some(json_response(
                400,
                json!({"error": format!("no handler found for uri [{path}] and method [PUT]")}),
            ));
        }
        let settings = body.pointer("/template/settings");
        if let Some(setting) = settings
            .and_then(Value::as_object)
            .and_then(|s| s.keys().find(|k| k.starts_with("index.lifecycle.")))
        {
            return Some(es_error(
                400,
                "illegal_argument_exception",
                &format!("unknown setting [{setting}] please check that any required plugins are installed, or check the breaking changes documentation for removed settings"),
            ));
        }
        let mut numbers = version.split('.').map(|n| n.parse::<u32>().unwrap_or(0));
        let (major, minor) = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
        let flat_object = (major, minor) >= (2, 7);
        if let Some(properties) = body.pointer("/template/mappings/properties") {
            if let Some(reason) = opensearch_mapping_problem(properties, flat_object) {
                // As OpenSearch answers a component template it cannot parse.
                return Some(json_response(
                    400,
                    json!({"error": {
                        "root_cause": [{"type": "mapper_parsing_exception", "reason": reason}],
                        "type": "mapper_parsing_exception",
                        "reason": format!("Failed to parse mapping [_doc]: {reason}"),
                        "caused_by": {"type": "mapper_parsing_exception", "reason": reason}},
                        "status": 400}),
                ));
            }
        }
    }
    if let Some(name) = path.strip_prefix("/_index_template/") {
        for component in body["composed_of"].as_array().into_iter().flatten() {
            let component = component.as_str().unwrap_or("");
            if !store
                .templates
                .contains_key(&format!("_component_template/{component}"))
            {
                return Some(es_error(
                    400,
                    "invalid_index_template_exception",
                    &format!("index_template [{name}] invalid, cause [index template [{name}] specifies component templates [{component}] that do not exist]"),
                ));
            }
        }
    }
    None
}

/// The first field OpenSearch refuses in `properties`, as its error says it.
fn opensearch_mapping_problem(properties: &Value, flat_object: bool) -> Option<String> {
    for (name, field) in properties.as_object()? {
        let ty = field
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("object");
        match ty {
            "flattened" => {
                return Some(format!(
                    "No handler for type [flattened] declared on field [{name}]"
                ))
            }
            "flat_object" if !flat_object => {
                return Some(format!(
                    "No handler for type [flat_object] declared on field [{name}]"
                ))
            }
            "flat_object" => {
                let extra: Vec<String> = field
                    .as_object()?
                    .iter()
                    .filter(|(k, _)| *k != "type")
                    .map(|(k, v)| format!("[{k} : {v}]"))
                    .collect();
                if !extra.is_empty() {
                    return Some(format!(
                        "Mapping definition for [{name}] has unsupported parameters:  {}",
                        extra.join(" ")
                    ));
                }
            }
            _ => {}
        }
        if let Some(children) = field.get("properties") {
            if let Some(problem) = opensearch_mapping_problem(children, flat_object) {
                return Some(problem);
            }
        }
    }
    None
}

async fn bulk(state: &State, seen: &mut Seen, body: Bytes) -> Answer {
    let content_type = seen.content_type.clone().unwrap_or_default();
    let media = content_type.split(';').next().unwrap_or("").trim();
    if !matches!(media, "application/json" | "application/x-ndjson") {
        return Ok(es_error(
            406,
            "media_type_header_exception",
            &format!("Content-Type header [{content_type}] is not supported"),
        ));
    }
    let outage = state.knobs.lock().unwrap().outage.clone();
    match outage {
        Some(Outage::Status(status)) => {
            let (kind, reason) = match status {
                429 => (
                    "es_rejected_execution_exception",
                    "rejected execution of coordinating operation",
                ),
                503 => (
                    "unavailable_shards_exception",
                    "primary shard is not active",
                ),
                _ => ("exception", "failure"),
            };
            return Ok(es_error(status, kind, reason));
        }
        Some(Outage::Drop) => return Err(Dropped),
        Some(Outage::Hang) => {
            hang(state).await;
            return Err(Dropped);
        }
        _ => {}
    }
    if body.last() != Some(&b'\n') {
        return Ok(es_error(
            400,
            "illegal_argument_exception",
            "The bulk request must be terminated by a newline [\\n]",
        ));
    }
    // `?require_data_stream=true` (Elasticsearch 8.13+); engines without
    // it refuse the whole request, as for any unknown parameter.
    let query = seen.query.clone().unwrap_or_default();
    let asked = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("require_data_stream"));
    if asked.is_some() && !knows_require_data_stream(state) {
        return Ok(es_error(
            400,
            "illegal_argument_exception",
            "request [/_bulk] contains unrecognized parameter: [require_data_stream]",
        ));
    }
    let require_data_stream = matches!(asked, Some("" | "=true"));
    let started = std::time::Instant::now();
    let answer = match apply(state, seen, &body, require_data_stream) {
        Ok(answer) => answer,
        Err(response) => return Ok(response),
    };
    state.bulk_requests.fetch_add(1, Ordering::Relaxed);
    state
        .bulk_docs
        .fetch_add(seen.actions.len() as u64, Ordering::Relaxed);
    state
        .bulk_bytes
        .fetch_add(seen.wire_bytes as u64, Ordering::Relaxed);
    if outage == Some(Outage::HangAfterStore) {
        hang(state).await;
        return Err(Dropped);
    }
    let took = started.elapsed().as_millis() as u64;
    let errors = answer
        .iter()
        .any(|(_, item)| item.get("error").is_some_and(|e| !e.is_null()));
    let items: Vec<Value> = answer
        .into_iter()
        .map(|(action, item)| json!({ action: item }))
        .collect();
    Ok(json_response(
        200,
        json!({"took": took, "errors": errors, "items": items}),
    ))
}

/// Elasticsearch 8.13 and later; not OpenSearch, nor Quickwit.
fn knows_require_data_stream(state: &State) -> bool {
    let knobs = state.knobs.lock().unwrap();
    if knobs.opensearch.is_some() || knobs.quickwit {
        return false;
    }
    let version = knobs.elasticsearch.as_deref().unwrap_or("8.15.0");
    let mut numbers = version.split('.').map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    (major, minor) >= (8, 13)
}

/// Whether the index template that applies to `name` (the matching one of
/// highest priority, as Elasticsearch picks) has `data_stream`.
fn template_makes_a_stream(store: &Store, name: &str) -> bool {
    let matches = |pattern: &str| {
        let parts: Vec<&str> = pattern.split('*').collect();
        if parts.len() == 1 {
            return pattern == name;
        }
        let mut rest = name;
        for (i, part) in parts.iter().enumerate() {
            if i == 0 {
                let Some(after) = rest.strip_prefix(part) else {
                    return false;
                };
                rest = after;
            } else if i == parts.len() - 1 {
                return rest.ends_with(part);
            } else {
                let Some(at) = rest.find(part) else {
                    return false;
                };
                rest = &rest[at + part.len()..];
            }
        }
        true
    };
    store
        .templates
        .iter()
        .filter(|(path, _)| path.starts_with("_index_template/"))
        .filter(|(_, body)| match &body["index_patterns"] {
            Value::String(one) => matches(one),
            Value::Array(list) => list.iter().filter_map(Value::as_str).any(matches),
            _ => false,
        })
        .max_by_key(|(_, body)| body["priority"].as_i64().unwrap_or(0))
        .is_some_and(|(_, body)| body.get("data_stream").is_some())
}

/// Waits until the outage knob changes (the client has usually given up by then).
async fn hang(state: &State) {
    let mut changed = state.outage_changed.subscribe();
    let _ = tokio::time::timeout(Duration::from_secs(120), changed.changed()).await;
}

/// Applies every item; returns `(answer key, item result)` per item, or a
/// whole-request error response.
#[allow(clippy::result_large_err)] // a test double: clarity over size
fn apply(
    state: &State,
    seen: &mut Seen,
    body: &[u8],
    require_data_stream: bool,
) -> Result<Vec<(String, Value)>, Response<Full<Bytes>>> {
    let knobs = state.knobs.lock().unwrap();
    let mut store = state.store.lock().unwrap();
    let mut lines = body
        .split(|b| *b == b'\n')
        .enumerate()
        .filter(|(_, l)| !l.is_empty());
    let mut results = Vec::new();
    while let Some((n, line)) = lines.next() {
        let malformed = || {
            es_error(
                400,
                "illegal_argument_exception",
                &format!(
                    "Malformed action/metadata line [{}], expected START_OBJECT",
                    n + 1
                ),
            )
        };
        let action: Value = serde_json::from_slice(line).map_err(|_| malformed())?;
        let Some((op, meta)) = action.as_object().and_then(|m| m.iter().next()) else {
            return Err(malformed());
        };
        let op = op.clone();
        if !matches!(op.as_str(), "create" | "index" | "delete") {
            return Err(es_error(
                400,
                "illegal_argument_exception",
                &format!("Malformed action/metadata line [{}], expected field [create], [delete], [index] or [update] but found [{op}]", n + 1),
            ));
        }
        let index = meta
            .get("_index")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let id = match meta.get("_id").and_then(Value::as_str) {
            Some(id) => id.to_owned(),
            None => {
                store.seq_no += 1;
                format!("auto-{}", store.seq_no)
            }
        };
        let source = if op == "delete" {
            None
        } else {
            let Some((_, source_line)) = lines.next() else {
                return Err(es_error(
                    400,
                    "illegal_argument_exception",
                    "Validation Failed: 1: no requests added;",
                ));
            };
            if knobs.count_only {
                Some(Value::Null)
            } else {
                match serde_json::from_slice::<Value>(source_line) {
                    Ok(v) => Some(v),
                    Err(e) => {
                        seen.actions.push((op.clone(), index.clone(), id.clone()));
                        results.push((
                            op.clone(),
                            item_error(
                                &index,
                                &id,
                                400,
                                "document_parsing_exception",
                                &format!("[1:1] failed to parse: {e}"),
                            ),
                        ));
                        continue;
                    }
                }
            }
        };
        seen.actions.push((op.clone(), index.clone(), id.clone()));
        let key = if knobs.quickwit {
            "index".to_owned()
        } else {
            op.clone()
        };
        let result = apply_item(
            &knobs,
            &mut store,
            (&op, require_data_stream),
            &index,
            &id,
            source,
        );
        results.push((key, result));
    }
    if knobs.quickwit {
        for (_, item) in &mut results {
            quickwit_style(item);
        }
    }
    Ok(results)
}

fn item_error(index: &str, id: &str, status: u16, error_type: &str, reason: &str) -> Value {
    json!({"_index": index, "_id": id, "status": status, "error": {"type": error_type, "reason": reason, "index": index}})
}

fn apply_item(
    knobs: &Knobs,
    store: &mut Store,
    (op, require_data_stream): (&str, bool),
    index: &str,
    id: &str,
    source: Option<Value>,
) -> Value {
    if index.is_empty() || index != index.to_lowercase() || index.starts_with(['_', '-', '+']) {
        return item_error(
            index,
            id,
            400,
            "invalid_index_name_exception",
            &format!("Invalid index name [{index}]"),
        );
    }
    let attempts = {
        let n = store.attempts.entry(id.to_owned()).or_insert(0);
        *n += 1;
        *n
    };
    if let Some(doc) = &source {
        for ((path, value), fault) in &knobs.faults {
            if lookup(doc, path) != Some(value) {
                continue;
            }
            match fault {
                ItemFault::Rejected { times } if attempts <= *times => {
                    return item_error(
                        index,
                        id,
                        429,
                        "es_rejected_execution_exception",
                        "rejected execution of primary operation",
                    );
                }
                ItemFault::Mapping => {
                    return item_error(
                        index,
                        id,
                        400,
                        "mapper_parsing_exception",
                        &format!("failed to parse field [{path}] of type [long] in document with id '{id}'"),
                    );
                }
                ItemFault::Conflict => {
                    return item_error(index, id, 409, "version_conflict_engine_exception", &format!("[{id}]: version conflict, document already exists (current version [1])"));
                }
                ItemFault::Rejected { .. } => {}
            }
        }
    }
    let exists = store.created.contains(index) || store.indices.contains_key(index);
    let mut is_stream =
        knobs.data_streams.iter().any(|s| s == index) || store.streams.contains(index);
    // A first write to a name that no index holds: a data stream if its
    // index template says so (Elasticsearch, OpenSearch), else a plain index.
    if !is_stream && !exists && template_makes_a_stream(store, index) {
        store.streams.insert(index.to_owned());
        is_stream = true;
    }
    // As Elasticsearch 8.13+ answers `require_data_stream` per item.
    if require_data_stream && !is_stream {
        if exists {
            return item_error(
                index,
                id,
                404,
                "resource_not_found_exception",
                &format!("[require_data_stream] request flag is [true] and [{index}] is not a data stream"),
            );
        }
        return json!({"_index": index, "_id": id, "status": 404, "error": {
            "type": "index_not_found_exception",
            "reason": format!("no such index [{index}] and the index creation request requires a data stream, but no matching index template with data stream template was found for it"),
            "index": index, "resource.type": "index_expression", "resource.id": index}});
    }
    if knobs.no_auto_create
        && !is_stream
        && !store.created.contains(index)
        && !store.indices.contains_key(index)
    {
        return json!({"_index": index, "_id": id, "status": 404, "error": {
            "type": "index_not_found_exception", "reason": format!("no such index [{index}]"),
            "index": index, "resource.type": "index_expression", "resource.id": index}});
    }
    if is_stream {
        if op != "create" {
            return item_error(
                index,
                id,
                400,
                "illegal_argument_exception",
                "only write ops with an op_type of create are allowed in data streams",
            );
        }
        if !knobs.count_only && source.as_ref().and_then(|d| d.get("@timestamp")).is_none() {
            return item_error(
                index,
                id,
                400,
                "illegal_argument_exception",
                "data stream timestamp field [@timestamp] is missing",
            );
        }
    }
    store.seq_no += 1;
    let seq_no = store.seq_no;
    // Data streams store into a backing index; the answer names it, as ES does.
    let answered_index = if is_stream {
        format!(".ds-{index}-2026.01.01-000001")
    } else {
        index.to_owned()
    };
    let docs = store.indices.entry(index.to_owned()).or_default();
    let ok = |result: &str, version: u64, status: u16| {
        json!({"_index": answered_index, "_id": id, "_version": version, "result": result,
            "_shards": {"total": 2, "successful": 1, "failed": 0}, "_seq_no": seq_no, "_primary_term": 1, "status": status})
    };
    match op {
        "create" => {
            if let Some((version, _)) = docs.get(id) {
                let version = *version;
                store.conflicts += 1;
                return item_error(
                    index,
                    id,
                    409,
                    "version_conflict_engine_exception",
                    &format!("[{id}]: version conflict, document already exists (current version [{version}])"),
                );
            }
            docs.insert(id.to_owned(), (1, source.unwrap_or(Value::Null)));
            ok("created", 1, 201)
        }
        "index" => {
            let version = docs.get(id).map_or(1, |(v, _)| v + 1);
            docs.insert(id.to_owned(), (version, source.unwrap_or(Value::Null)));
            if version == 1 {
                ok("created", 1, 201)
            } else {
                ok("updated", version, 200)
            }
        }
        _ => match docs.remove(id) {
            Some((version, _)) => ok("deleted", version + 1, 200),
            None => ok("not_found", 1, 404),
        },
    }
}

/// Quickwit's answer shape: `index` key, `error: null`, no `_version`/`result`/`_shards`.
fn quickwit_style(item: &mut Value) {
    if let Some(map) = item.as_object_mut() {
        map.remove("_version");
        map.remove("result");
        map.remove("_shards");
        map.remove("_seq_no");
        map.remove("_primary_term");
        map.entry("error").or_insert(Value::Null);
        // Quickwit has no `_id` semantics: a create is never a conflict.
        if map.get("status").and_then(Value::as_u64) == Some(409) {
            map.insert("status".into(), json!(201));
            map.insert("error".into(), Value::Null);
        }
    }
}

fn lookup<'v>(doc: &'v Value, path: &str) -> Option<&'v Value> {
    let mut node = doc;
    for part in path.split('.') {
        node = node.get(part)?;
    }
    Some(node)
}
