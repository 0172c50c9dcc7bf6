//! Intake API v3 abbreviates every key (`x` for `transaction`, `n` for
//! `name`, ...). The tables below spell each abbreviation the
//! `@elastic/apm-rum` agent writes (its `compress.js`) and APM Server's
//! `rumv3` model reads, so a v3 line is expanded once into the v2 shape and
//! one mapping serves both versions. A key the tables do not know is kept
//! as sent (and lands in `rum.extra` like any unmapped key). The keys are
//! spelled out while the line is read (`super::read_spelled`), in one pass.

/// One abbreviated key, its v2 name, and what is below it.
pub(super) struct Key {
    /// `short`'s bytes (at most 8) with its length, compared as one integer:
    /// a line's every key is looked up in these tables.
    packed: u64,
    pub(super) long: &'static str,
    pub(super) inner: Inner,
}

/// A key of at most 7 bytes as an integer unique to it (its bytes, then its
/// length in the top byte); `None` for a longer key.
const fn pack(key: &[u8]) -> Option<u64> {
    if key.len() > 7 {
        return None;
    }
    let mut packed = (key.len() as u64) << 56;
    let mut i = 0;
    while i < key.len() {
        packed |= (key[i] as u64) << (8 * i);
        i += 1;
    }
    Some(packed)
}

const fn key(short: &'static str, long: &'static str, inner: Inner) -> Key {
    // v2's one key (`metricset`) is longer than 7 bytes: packed as `u64::MAX`,
    // which no incoming key of 7 bytes or fewer packs to (see `find`).
    let packed = match pack(short.as_bytes()) {
        Some(packed) => packed,
        None => u64::MAX,
    };
    Key {
        packed,
        long,
        inner,
    }
}

/// The entry of `keys` whose short form is `short`.
pub(super) fn find(keys: &'static [Key], short: &str) -> Option<&'static Key> {
    match pack(short.as_bytes()) {
        Some(packed) => keys.iter().find(|k| k.packed == packed),
        // Only v2's `metricset` is longer: its long form is its short one.
        None => keys
            .iter()
            .find(|k| k.packed == u64::MAX && k.long == short),
    }
}

pub(super) enum Inner {
    Leaf,
    Object(&'static [Key]),
    /// An array of objects of this shape.
    Array(&'static [Key]),
    /// Breakdown metricsets (an array of them, or one): skipped, checked
    /// and counted unless `keep_breakdown`.
    Breakdown(&'static [Key]),
}

const fn leaf(short: &'static str, long: &'static str) -> Key {
    key(short, long, Inner::Leaf)
}
const fn obj(short: &'static str, long: &'static str, keys: &'static [Key]) -> Key {
    key(short, long, Inner::Object(keys))
}
const fn breakdown(short: &'static str, long: &'static str, keys: &'static [Key]) -> Key {
    key(short, long, Inner::Breakdown(keys))
}
const fn arr(short: &'static str, long: &'static str, keys: &'static [Key]) -> Key {
    key(short, long, Inner::Array(keys))
}

const NAME_VERSION: &[Key] = &[leaf("n", "name"), leaf("ve", "version")];
const USER: &[Key] = &[
    leaf("id", "id"),
    leaf("un", "username"),
    leaf("em", "email"),
];
const SERVICE: &[Key] = &[
    leaf("n", "name"),
    leaf("ve", "version"),
    obj("a", "agent", NAME_VERSION),
    obj("la", "language", NAME_VERSION),
    obj("fw", "framework", NAME_VERSION),
    obj("ru", "runtime", NAME_VERSION),
    leaf("en", "environment"),
];
pub(super) const METADATA: &[Key] = &[
    obj("se", "service", SERVICE),
    leaf("l", "labels"),
    obj("u", "user", USER),
    obj(
        "n",
        "network",
        &[obj("c", "connection", &[leaf("t", "type")])],
    ),
];
const RESPONSE: &[Key] = &[
    leaf("ts", "transfer_size"),
    leaf("ebs", "encoded_body_size"),
    leaf("dbs", "decoded_body_size"),
    leaf("sc", "status_code"),
    leaf("hs", "headers"),
];
const CONTEXT: &[Key] = &[
    obj("p", "page", &[leaf("rf", "referer"), leaf("url", "url")]),
    obj(
        "h",
        "http",
        &[
            leaf("url", "url"),
            leaf("mt", "method"),
            leaf("sc", "status_code"),
            obj("r", "response", RESPONSE),
        ],
    ),
    obj("r", "response", RESPONSE),
    obj(
        "dt",
        "destination",
        &[
            obj(
                "se",
                "service",
                &[leaf("n", "name"), leaf("t", "type"), leaf("rc", "resource")],
            ),
            leaf("ad", "address"),
            leaf("po", "port"),
        ],
    ),
    obj("u", "user", USER),
    leaf("cu", "custom"),
    leaf("g", "tags"),
    obj("se", "service", SERVICE),
];
const METRICSET: &[Key] = &[
    obj("y", "span", &[leaf("t", "type"), leaf("su", "subtype")]),
    obj(
        "sa",
        "samples",
        &[
            obj("ysc", "span.self_time.count", &[leaf("v", "value")]),
            obj("yss", "span.self_time.sum.us", &[leaf("v", "value")]),
        ],
    ),
    leaf("g", "tags"),
];
const SPAN: &[Key] = &[
    leaf("id", "id"),
    leaf("n", "name"),
    leaf("t", "type"),
    leaf("su", "subtype"),
    leaf("ac", "action"),
    leaf("s", "start"),
    leaf("d", "duration"),
    obj("c", "context", CONTEXT),
    leaf("o", "outcome"),
    leaf("sr", "sample_rate"),
    leaf("pid", "parent_id"),
    leaf("tid", "trace_id"),
    leaf("sy", "sync"),
];
const NAVIGATION_TIMING: &[Key] = &[
    leaf("fs", "fetchStart"),
    leaf("ls", "domainLookupStart"),
    leaf("le", "domainLookupEnd"),
    leaf("cs", "connectStart"),
    leaf("ce", "connectEnd"),
    leaf("qs", "requestStart"),
    leaf("rs", "responseStart"),
    leaf("re", "responseEnd"),
    leaf("dl", "domLoading"),
    leaf("di", "domInteractive"),
    leaf("ds", "domContentLoadedEventStart"),
    leaf("de", "domContentLoadedEventEnd"),
    leaf("dc", "domComplete"),
    leaf("es", "loadEventStart"),
    leaf("ee", "loadEventEnd"),
];
const AGENT_MARKS: &[Key] = &[
    leaf("fb", "timeToFirstByte"),
    leaf("di", "domInteractive"),
    leaf("dc", "domComplete"),
    leaf("fp", "firstContentfulPaint"),
    leaf("lp", "largestContentfulPaint"),
];
pub(super) const TRANSACTION: &[Key] = &[
    leaf("id", "id"),
    leaf("pid", "parent_id"),
    leaf("tid", "trace_id"),
    leaf("n", "name"),
    leaf("t", "type"),
    leaf("d", "duration"),
    obj("c", "context", CONTEXT),
    obj(
        "k",
        "marks",
        &[
            obj("nt", "navigationTiming", NAVIGATION_TIMING),
            obj("a", "agent", AGENT_MARKS),
        ],
    ),
    breakdown("me", "breakdown", METRICSET),
    arr("y", "spans", SPAN),
    obj(
        "yc",
        "span_count",
        &[leaf("sd", "started"), leaf("dd", "dropped")],
    ),
    leaf("sm", "sampled"),
    leaf("sr", "sample_rate"),
    leaf("o", "outcome"),
    obj(
        "exp",
        "experience",
        &[
            leaf("cls", "cls"),
            leaf("fid", "fid"),
            leaf("tbt", "tbt"),
            leaf("lt", "longtask"),
        ],
    ),
    obj(
        "ses",
        "session",
        &[leaf("id", "id"), leaf("seq", "sequence")],
    ),
];
const FRAME: &[Key] = &[
    leaf("ap", "abs_path"),
    leaf("f", "filename"),
    leaf("fn", "function"),
    leaf("li", "lineno"),
    leaf("co", "colno"),
    leaf("cli", "context_line"),
    leaf("mo", "module"),
    leaf("pre", "pre_context"),
    leaf("poc", "post_context"),
];
pub(super) const ERROR: &[Key] = &[
    leaf("id", "id"),
    leaf("cl", "culprit"),
    obj(
        "ex",
        "exception",
        &[
            leaf("mg", "message"),
            arr("st", "stacktrace", FRAME),
            leaf("t", "type"),
            leaf("hd", "handled"),
            leaf("cn", "code"),
            leaf("mo", "module"),
            leaf("at", "attributes"),
        ],
    ),
    obj(
        "log",
        "log",
        &[
            leaf("mg", "message"),
            leaf("lv", "level"),
            leaf("ln", "logger_name"),
            leaf("pmg", "param_message"),
            arr("st", "stacktrace", FRAME),
        ],
    ),
    obj("c", "context", CONTEXT),
    leaf("tid", "trace_id"),
    leaf("pid", "parent_id"),
    leaf("xid", "transaction_id"),
    obj(
        "x",
        "transaction",
        &[leaf("t", "type"), leaf("sm", "sampled")],
    ),
];
/// The kinds of a v3 line.
pub(super) const LINE: &[Key] = &[
    obj("m", "metadata", METADATA),
    obj("x", "transaction", TRANSACTION),
    obj("e", "error", ERROR),
    breakdown("me", "metricset", METRICSET),
];

/// v2 spells every key out; only its metricset lines are skipped the same way.
pub(super) const LINE_V2: &[Key] = &[breakdown("metricset", "metricset", &[])];
