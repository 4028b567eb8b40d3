//! Audit recovery at start: changes the store committed whose request died (crash, `kill -9`)
//! before its audit record was written.
//!
//! A write is store commit, then audit append, then the answer. A crash between the first two
//! leaves a change nobody acknowledged but that is in the store. At start, the server reads
//! the revisions of the last [`WINDOW`] change records, replays the store's history from the
//! lowest of them, and appends a `change` record (user unknown, outcome from the event) for
//! every revision that has none. If the history no longer reaches back that far, it appends
//! an `alert` naming the gap instead.
//!
//! Only for the embedded store: on a shared etcd, other servers' changes are (rightly) missing
//! from this server's log.

use std::collections::{BTreeSet, VecDeque};
use std::io::BufRead;
use std::path::Path;
use std::time::Duration;

use bulkhead_store::{Revision, Store, StoreError, WatchEvent};
use futures_util::StreamExt;
use serde_json::Value;
use tracing::{info, warn};

use crate::audit::{AuditEntry, AuditLog};
use crate::kinds::{KindInfo, REGISTRY_ROOT};
use crate::objects::{served_value, tier_of_doc};
use crate::rbac::rule_kind_name;

/// How many of the last change records bound the search: more writes than this in flight at
/// the moment of a crash would leave some unrecovered.
pub const WINDOW: usize = 1024;

/// Revisions of the last [`WINDOW`] change records of the log at `path`.
fn audited(path: &Path) -> std::io::Result<BTreeSet<Revision>> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(e) => return Err(e),
    };
    let mut last = VecDeque::with_capacity(WINDOW);
    for line in std::io::BufReader::new(file).lines() {
        let line = line?;
        // Cheap pre-filter: only change records carry a revision worth parsing for.
        if !line.contains("\"type\":\"change\"") {
            continue;
        }
        let Ok(record) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if let Some(r) = record.get("revision").and_then(Value::as_u64) {
            if last.len() == WINDOW {
                last.pop_front();
            }
            last.push_back(r);
        }
    }
    Ok(last.into_iter().collect())
}

/// Appends records for unaudited changes (see the module docs); returns how many.
pub async fn recover<S: Store>(
    store: &S,
    audit: &AuditLog,
    protected: &[String],
) -> Result<usize, String> {
    let path = audit.path().to_path_buf();
    let seen = tokio::task::spawn_blocking(move || audited(&path))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("reading the audit log: {e}"))?;
    let Some(&floor) = seen.first() else {
        return Ok(0);
    };
    let from = floor.saturating_sub(1);
    let current = store.current_revision().await.map_err(|e| e.to_string())?;
    if current <= from {
        return Ok(0);
    }
    let mut stream = match store.watch(REGISTRY_ROOT, from).await {
        Ok(s) => s,
        Err(StoreError::Compacted { oldest }) => return gap(audit, from, oldest).await,
        Err(e) => return Err(e.to_string()),
    };
    let mut entries = Vec::new();
    let mut at = from;
    while at < current {
        let event = match tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
            Ok(Some(Ok(event))) => event,
            Ok(Some(Err(StoreError::Compacted { oldest }))) => {
                return gap(audit, from, oldest).await;
            }
            Ok(Some(Err(e))) => return Err(e.to_string()),
            Ok(None) | Err(_) => break,
        };
        at = event.revision();
        if seen.contains(&at) {
            continue;
        }
        entries.extend(record(&event, protected));
    }
    let n = entries.iter().filter(|e| e.record_type == "change").count();
    if n > 0 {
        audit.append(entries).await.map_err(|e| e.to_string())?;
        warn!(
            records = n,
            "audit: recorded changes the store committed before a crash"
        );
    } else {
        info!("audit: no unrecorded changes");
    }
    Ok(n)
}

async fn gap(audit: &AuditLog, from: Revision, oldest: Revision) -> Result<usize, String> {
    let entry = AuditEntry {
        record_type: "alert",
        outcome: "audit-gap".into(),
        message: Some(format!(
            "the store history no longer reaches revision {from} (oldest {oldest}): changes in between may be missing from the audit log"
        )),
        ..AuditEntry::default()
    };
    audit.append(vec![entry]).await.map_err(|e| e.to_string())?;
    Ok(0)
}

/// The records for one unaudited store event (a change, and an alert on protected tiers).
fn record(event: &WatchEvent, protected: &[String]) -> Vec<AuditEntry> {
    let Some((info, namespace, name)) = KindInfo::parse_key(event.key()) else {
        return Vec::new();
    };
    let (outcome, verb, before, after) = match event {
        WatchEvent::Put(kv) => {
            let created = kv.create_revision == kv.mod_revision;
            (
                if created { "created" } else { "updated" },
                if created { "create" } else { "update" },
                None,
                served_value(&kv.value, kv.mod_revision).ok(),
            )
        }
        WatchEvent::Delete { prev, revision, .. } => (
            "deleted",
            "delete",
            prev.as_ref()
                .and_then(|kv| served_value(&kv.value, *revision).ok()),
            None,
        ),
    };
    let tier = after
        .as_ref()
        .or(before.as_ref())
        .and_then(|d| tier_of_doc(info.kind, d));
    let change = AuditEntry {
        record_type: "change",
        user: String::new(),
        verb: verb.into(),
        kind: rule_kind_name(info.kind).into(),
        namespace,
        name: Some(name),
        tier: tier.clone(),
        outcome: outcome.into(),
        code: 0,
        request_id: String::new(),
        revision: Some(event.revision()),
        message: Some(
            "recovered at start: the store committed this change but the server stopped before auditing it; the user is unknown".into(),
        ),
        before,
        after,
    };
    let mut out = vec![change.clone()];
    if let Some(t) = tier.filter(|t| protected.contains(t)) {
        out.push(AuditEntry {
            record_type: "alert",
            outcome: "protected-tier".into(),
            message: Some(format!(
                "recovered change in protected tier {t:?} by an unknown user"
            )),
            before: None,
            after: None,
            ..change
        });
    }
    out
}
