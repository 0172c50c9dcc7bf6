//! The sink's counters, looked up once at build time. Vector's standard names
//! where they fit (`component_sent_events_total` = delivered), plus
//! `elasticsearch_*` series for what only a bulk sink has. No per-index or
//! per-endpoint labels: index names change daily and URLs may carry secrets.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::telemetry::{ComponentMetrics, Counter, Histogram, LATENCY_BUCKETS};
use crate::topology::buffer::DEFAULT_OUTPUT;

#[derive(Clone)]
pub struct SinkMetrics {
    pub component: ComponentMetrics,
    /// Stored by Elasticsearch, including duplicates.
    pub delivered: Counter,
    /// Answered 409 to `create`: stored before (a re-send), counted as delivered.
    pub duplicates: Counter,
    pub dead_lettered: Counter,
    /// Documents sent again after a failure (one per document and retry).
    pub retried_events: Counter,
    /// Bulk requests that were retries.
    pub retries: Counter,
    pub sent_bytes: Counter,
    pub requests_ok: Counter,
    pub requests_partial: Counter,
    pub requests_failed: Counter,
    pub latency: Arc<Histogram>,
    pub request_errors: Counter,
    /// Failed requests whose answer was longer than the sink reads (counted
    /// instead of `request_errors`).
    pub response_too_large: Counter,
    pub documents_rejected: Counter,
    pub dead_letter_errors: Counter,
    /// Documents refused (each attempt) for want of a data stream: no index
    /// template with `data_stream` for their name (`require_data_stream`).
    pub data_stream_missing: Counter,
}

impl SinkMetrics {
    pub fn new(component: ComponentMetrics) -> Self {
        let requests = |outcome: &str| {
            component.counter(
                "elasticsearch_bulk_requests_total",
                "Bulk requests by outcome (ok: every item stored; partial: some stored; failed: none stored — no usable answer, or every item refused or to retry).",
                &[("outcome", outcome)],
            )
        };
        let labels = [
            ("component_id", component.id.as_str()),
            ("component_kind", component.kind),
            ("component_type", component.type_name),
        ];
        Self {
            delivered: component.sent_events(DEFAULT_OUTPUT),
            duplicates: component.counter(
                "elasticsearch_duplicate_events_total",
                "Documents Elasticsearch already had (409 on create), counted as delivered.",
                &[],
            ),
            dead_lettered: component.counter(
                "elasticsearch_dead_lettered_events_total",
                "Documents written to the dead-letter file.",
                &[],
            ),
            retried_events: component.counter(
                "elasticsearch_retried_events_total",
                "Documents sent again after a failure.",
                &[],
            ),
            retries: component.counter(
                "elasticsearch_bulk_retries_total",
                "Bulk requests that were retries.",
                &[],
            ),
            sent_bytes: component.counter(
                "component_sent_bytes_total",
                "Bytes a sink put on the wire (bulk bodies after compression).",
                &[],
            ),
            requests_ok: requests("ok"),
            requests_partial: requests("partial"),
            requests_failed: requests("failed"),
            latency: component.registry().histogram(
                "elasticsearch_bulk_request_duration_seconds",
                "Time from sending a bulk request to reading its whole answer.",
                &labels,
                LATENCY_BUCKETS,
            ),
            request_errors: component.errors("request_failed", "sending"),
            response_too_large: component.errors(super::retry::RESPONSE_TOO_LARGE, "sending"),
            documents_rejected: component.errors("document_rejected", "sending"),
            dead_letter_errors: component.errors("dead_letter_failed", "sending"),
            data_stream_missing: component.errors(super::retry::DATA_STREAM_MISSING, "sending"),
            component,
        }
    }

    /// `elasticsearch_in_flight_requests`: requests holding a concurrency
    /// slot, including those waiting to retry.
    pub fn register_in_flight(&self, slots: Arc<Semaphore>, concurrency: usize) {
        let labels = [
            ("component_id", self.component.id.as_str()),
            ("component_kind", self.component.kind),
            ("component_type", self.component.type_name),
        ];
        self.component.registry().gauge_fn(
            "elasticsearch_in_flight_requests",
            "Bulk requests in flight or waiting to retry (at most request.concurrency).",
            &labels,
            move || concurrency.saturating_sub(slots.available_permits()) as f64,
        );
    }
}
