//! `/metrics` in the Prometheus text format: requests by verb and code, a latency
//! histogram, open watches, stored objects per kind, audit counters.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::server::AppState;

/// Latency histogram bucket bounds, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// The label a handler sets on its response so that the metrics layer knows the verb.
#[derive(Debug, Clone, Copy)]
pub struct VerbLabel(pub &'static str);

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// The server's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    latency: Mutex<BTreeMap<&'static str, Histogram>>,
    /// Open watch streams.
    pub watchers: AtomicI64,
    /// Objects in the store per kind (kept by the counting task).
    pub objects: Mutex<BTreeMap<&'static str, i64>>,
    /// The last store revision the counting task saw.
    pub revision: AtomicU64,
    /// Watch events sent.
    pub watch_events: AtomicU64,
}

impl Metrics {
    /// Records one finished request.
    pub fn observe(&self, verb: &'static str, code: u16, elapsed: Duration) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((verb, code))
            .or_default() += 1;
        // Watches stay open for minutes: their duration is not a latency.
        if verb == "watch" {
            return;
        }
        let secs = elapsed.as_secs_f64();
        let mut latency = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        let h = latency.entry(verb).or_default();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    /// The Prometheus text.
    pub fn render(&self, audit: &crate::audit::AuditStats) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP bulkhead_server_requests_total API requests by verb and HTTP status."
        );
        let _ = writeln!(out, "# TYPE bulkhead_server_requests_total counter");
        for ((verb, code), n) in self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "bulkhead_server_requests_total{{verb=\"{verb}\",code=\"{code}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP bulkhead_server_request_duration_seconds Request latency by verb (watches excluded)."
        );
        let _ = writeln!(
            out,
            "# TYPE bulkhead_server_request_duration_seconds histogram"
        );
        for (verb, h) in self
            .latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            for (i, bound) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "bulkhead_server_request_duration_seconds_bucket{{verb=\"{verb}\",le=\"{bound}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "bulkhead_server_request_duration_seconds_bucket{{verb=\"{verb}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "bulkhead_server_request_duration_seconds_sum{{verb=\"{verb}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "bulkhead_server_request_duration_seconds_count{{verb=\"{verb}\"}} {}",
                h.count
            );
        }
        let _ = writeln!(out, "# HELP bulkhead_server_watchers Open watch streams.");
        let _ = writeln!(out, "# TYPE bulkhead_server_watchers gauge");
        let _ = writeln!(
            out,
            "bulkhead_server_watchers {}",
            self.watchers.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP bulkhead_server_watch_events_total Watch events sent (bookmarks included)."
        );
        let _ = writeln!(out, "# TYPE bulkhead_server_watch_events_total counter");
        let _ = writeln!(
            out,
            "bulkhead_server_watch_events_total {}",
            self.watch_events.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP bulkhead_server_stored_objects Objects in the store by kind."
        );
        let _ = writeln!(out, "# TYPE bulkhead_server_stored_objects gauge");
        for (kind, n) in self
            .objects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(out, "bulkhead_server_stored_objects{{kind=\"{kind}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP bulkhead_server_store_revision The latest store revision seen."
        );
        let _ = writeln!(out, "# TYPE bulkhead_server_store_revision gauge");
        let _ = writeln!(
            out,
            "bulkhead_server_store_revision {}",
            self.revision.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP bulkhead_audit_records Records in the audit log."
        );
        let _ = writeln!(out, "# TYPE bulkhead_audit_records gauge");
        let _ = writeln!(
            out,
            "bulkhead_audit_records {}",
            audit.records.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP bulkhead_audit_append_failures_total Audit appends that failed."
        );
        let _ = writeln!(out, "# TYPE bulkhead_audit_append_failures_total counter");
        let _ = writeln!(
            out,
            "bulkhead_audit_append_failures_total {}",
            audit.failures.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP bulkhead_audit_chain_valid 1 if the audit chain verified at start."
        );
        let _ = writeln!(out, "# TYPE bulkhead_audit_chain_valid gauge");
        let _ = writeln!(
            out,
            "bulkhead_audit_chain_valid {}",
            u8::from(audit.chain_ok.load(Ordering::Relaxed))
        );
        out
    }
}

/// Middleware: counts and times every request.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let response = next.run(request).await;
    let verb = response
        .extensions()
        .get::<VerbLabel>()
        .map_or("other", |v| v.0);
    state
        .metrics
        .observe(verb, response.status().as_u16(), start.elapsed());
    response
}
