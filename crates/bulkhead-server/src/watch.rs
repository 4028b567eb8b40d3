//! Watch streams: `GET <collection>?watch=1&resourceVersion=N` as newline-delimited JSON.
//!
//! Each HTTP watch holds one store watch on the whole registry (`/registry/`) from revision
//! `N` and keeps the events under its collection's prefix. Watching the whole registry
//! rather than the collection costs a key comparison per foreign event and buys exact
//! bookmarks: every store revision passes through the stream in order, so the revision of
//! the last event received, whatever its key, is a point up to which this watch has
//! delivered everything. A client that resumes from a bookmark's or an event's
//! `resourceVersion` therefore misses nothing and sees nothing twice, and a quiet collection
//! does not fall behind the store's history while other collections change.
//!
//! Without `resourceVersion` (or with `0`), the watch starts with the current objects as
//! `ADDED` events and goes on from the revision of that snapshot, as Kubernetes does.
//!
//! With a label selector or a caller whose rules cover only some namespaces or tiers, the
//! watch shows a view: an object that stops passing the filter is sent as `DELETED` (its new
//! state), one that starts passing as `ADDED`. The watch remembers which keys it has shown;
//! after a resume it does not know what the client holds, so the first change that takes a
//! key out of the view is sent as `DELETED` even if the client never had it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use bulkhead_store::{Revision, Store, StoreError, WatchEvent, WatchStream};
use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::handlers::{Call, Filter, Params};
use crate::kinds::{KindInfo, REGISTRY_ROOT};
use crate::metrics::Metrics;
use crate::objects::served_bytes;
use crate::rbac::Verb;

/// Lines buffered per watch before the sender waits for the client.
const BUFFER: usize = 256;

/// Starts a watch (see the module docs).
pub async fn watch(call: &Call, params: &Params) -> Result<Response, ApiError> {
    call.authorize_some(Verb::Watch).await?;
    let selector = params.selector()?;
    let from = params.revision()?;
    let info = call.target.info;
    let prefix = info.prefix(call.target.namespace.as_deref());
    let filter = Filter::new(call, Verb::Watch, selector);
    let mut view = View {
        info,
        prefix,
        filter,
        shown: HashMap::new(),
    };
    let store = &call.state.store;

    let mut initial = Vec::new();
    let start = match from {
        Some(r) if r > 0 => r,
        _ => {
            let (items, revision) = store.list(&view.prefix).await?;
            for kv in items {
                let passes = view.filter.admits(&kv.value)?;
                if view.tracks() {
                    view.shown.insert(kv.key.clone(), passes);
                }
                if passes {
                    initial.push(event_line(
                        "ADDED",
                        &served_bytes(info, &kv.value, kv.mod_revision)?,
                    ));
                }
            }
            revision
        }
    };
    let stream = match store.watch(REGISTRY_ROOT, start).await {
        Ok(s) => s,
        Err(e @ StoreError::Compacted { .. }) => {
            return Ok(stream_response(vec![error_line(&ApiError::from(e))]));
        }
        Err(e) => return Err(e.into()),
    };
    let (tx, rx) = mpsc::channel::<Bytes>(BUFFER);
    let metrics = std::sync::Arc::clone(&call.state.metrics);
    let pump = Pump {
        view,
        stream,
        tx,
        position: start,
        bookmarks: params.bookmarks,
        interval: call.state.config.bookmark_interval,
        timeout: params.timeout_seconds.map(Duration::from_secs),
        shutdown: call.state.shutdown.clone(),
        guard: WatcherGuard::new(metrics),
    };
    tokio::spawn(pump.run(initial));
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|line| (Ok::<_, Infallible>(line), rx))
    });
    Ok((
        StatusCode::OK,
        [(CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response())
}

fn stream_response(lines: Vec<Bytes>) -> Response {
    let body = futures_util::stream::iter(lines.into_iter().map(Ok::<_, Infallible>));
    (
        StatusCode::OK,
        [(CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response()
}

/// `{"type":…,"object":…}\n` around an already-encoded object.
fn event_line(kind: &str, object: &[u8]) -> Bytes {
    let mut line = Vec::with_capacity(object.len() + 32);
    line.extend_from_slice(b"{\"type\":\"");
    line.extend_from_slice(kind.as_bytes());
    line.extend_from_slice(b"\",\"object\":");
    line.extend_from_slice(object);
    line.extend_from_slice(b"}\n");
    Bytes::from(line)
}

fn error_line(error: &ApiError) -> Bytes {
    let mut text = json!({"type": "ERROR", "object": error.status()}).to_string();
    text.push('\n');
    Bytes::from(text)
}

fn bookmark_line(info: KindInfo, revision: Revision) -> Bytes {
    let mut text = json!({"type": "BOOKMARK", "object": {
        "kind": info.kind.kind_name(),
        "apiVersion": info.kind.api_version(),
        "metadata": {"resourceVersion": revision.to_string()},
    }})
    .to_string();
    text.push('\n');
    Bytes::from(text)
}

/// Counts open watches in `/metrics`.
struct WatcherGuard(std::sync::Arc<Metrics>);

impl WatcherGuard {
    fn new(metrics: std::sync::Arc<Metrics>) -> Self {
        metrics
            .watchers
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        WatcherGuard(metrics)
    }
}

impl Drop for WatcherGuard {
    fn drop(&mut self) {
        self.0
            .watchers
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// What one watch shows.
struct View {
    info: KindInfo,
    prefix: String,
    filter: Filter,
    /// Key → whether the client's view holds it (only with a filter).
    shown: HashMap<String, bool>,
}

impl View {
    fn tracks(&self) -> bool {
        !self.filter.passes_everything()
    }

    /// The line for one store event, if the client should see one.
    fn line(&mut self, event: &WatchEvent) -> Result<Option<Bytes>, ApiError> {
        let key = event.key();
        if !key.starts_with(&self.prefix) {
            return Ok(None);
        }
        match event {
            WatchEvent::Put(kv) => {
                let object = served_bytes(self.info, &kv.value, kv.mod_revision)?;
                let created = kv.create_revision == kv.mod_revision;
                if !self.tracks() {
                    let kind = if created { "ADDED" } else { "MODIFIED" };
                    return Ok(Some(event_line(kind, &object)));
                }
                let passes = self.filter.admits(&kv.value)?;
                let was = self.shown.insert(kv.key.clone(), passes);
                Ok(match (passes, was) {
                    (true, Some(true)) => Some(event_line("MODIFIED", &object)),
                    (true, None) if !created => Some(event_line("MODIFIED", &object)),
                    (true, _) => Some(event_line("ADDED", &object)),
                    (false, Some(false)) => None,
                    (false, None) if created => None,
                    (false, _) => Some(event_line("DELETED", &object)),
                })
            }
            WatchEvent::Delete { revision, prev, .. } => {
                let was = self.shown.remove(key);
                let object = match prev {
                    Some(kv) => {
                        if was.is_none() && self.tracks() && !self.filter.admits(&kv.value)? {
                            return Ok(None);
                        }
                        served_bytes(self.info, &kv.value, *revision)?
                    }
                    None => tombstone(self.info, key, *revision),
                };
                Ok((was != Some(false)).then(|| event_line("DELETED", &object)))
            }
        }
    }
}

/// The object of a delete whose last state the store no longer has (etcd after compaction).
fn tombstone(info: KindInfo, key: &str, revision: Revision) -> Vec<u8> {
    let (namespace, name) = match KindInfo::parse_key(key) {
        Some((_, ns, name)) => (ns, name),
        None => (None, key.to_string()),
    };
    let mut metadata = json!({"name": name, "resourceVersion": revision.to_string()});
    if let Some(ns) = namespace {
        metadata["namespace"] = ns.into();
    }
    json!({"apiVersion": info.kind.api_version(), "kind": info.kind.kind_name(), "metadata": metadata})
        .to_string()
        .into_bytes()
}

/// Moves events from the store watch to the HTTP body.
struct Pump {
    view: View,
    stream: WatchStream,
    tx: mpsc::Sender<Bytes>,
    position: Revision,
    bookmarks: bool,
    interval: Duration,
    timeout: Option<Duration>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    guard: WatcherGuard,
}

impl Pump {
    async fn run(self, initial: Vec<Bytes>) {
        let Pump {
            mut view,
            mut stream,
            tx,
            mut position,
            bookmarks,
            interval,
            timeout,
            mut shutdown,
            guard,
        } = self;
        let metrics = &guard.0;
        let send = |line: Bytes| {
            metrics
                .watch_events
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tx.send(line)
        };
        for line in initial {
            if send(line).await.is_err() {
                return;
            }
        }
        let mut bookmark =
            tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        bookmark.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let deadline =
            tokio::time::sleep(timeout.unwrap_or(Duration::from_secs(u64::from(u32::MAX))));
        tokio::pin!(deadline);
        loop {
            let line = tokio::select! {
                item = stream.next() => match item {
                    None => break,
                    Some(Err(e)) => {
                        let error = match e {
                            StoreError::Compacted { .. } => ApiError::from(e),
                            other => ApiError::unavailable(format!("the watch ended: {other}")),
                        };
                        let _ = send(error_line(&error)).await;
                        break;
                    }
                    Some(Ok(event)) => {
                        position = event.revision();
                        match view.line(&event) {
                            Ok(line) => line,
                            Err(e) => {
                                let _ = send(error_line(&e)).await;
                                break;
                            }
                        }
                    }
                },
                _ = bookmark.tick(), if bookmarks => Some(bookmark_line(view.info, position)),
                _ = tx.closed() => break,
                _ = shutdown.changed() => break,
                _ = &mut deadline => break,
            };
            if let Some(line) = line
                && send(line).await.is_err()
            {
                break;
            }
        }
    }
}
