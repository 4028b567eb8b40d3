//! The audit log: append-only, hash-chained JSON lines in `<data-dir>/audit.log`, with the
//! chain head (record count and last hash) in `<data-dir>/audit.head`.
//!
//! Every record is one line: its fields (`seq`, `time`, `type`, `user`, `verb`, `kind`,
//! `namespace`, `name`, `tier`, `outcome`, `code`, `requestId`, `revision`, `message`,
//! `before`, `after`), then `prev`, the hash of the previous record (64 zeros for the
//! first), then `hash`, which is always last on the line: the SHA-256 of the line's bytes
//! with the `,"hash":"…"` member removed. So any byte changed in a record changes its hash;
//! a record moved or removed breaks the `prev` link of the one after it (and `seq` no longer
//! counts 1, 2, 3…); and a record removed from the end is caught by the head file, which
//! names the count and hash of the last record and is replaced atomically (write, fsync,
//! rename) after every append.
//!
//! Appends are group-committed by one writer thread: the records waiting when it wakes are
//! written with one `write`, one `fdatasync` and one head update, and every request in the
//! batch is answered only then. A crash can leave records that are in the log but not yet in
//! the head; they still chain correctly, [`verify`] accepts them, and the next start moves
//! the head forward. A crash can also leave half a line at the end; it was never
//! acknowledged, and the next start cuts it off.
//!
//! The chain detects edits by anyone who does not recompute the hashes that follow; it has
//! no secret, so someone who can write the data directory can forge a consistent log. Copy
//! `audit.head` (or the records) elsewhere to anchor it; the start logs the head hash too.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::SystemTime;

use serde::Serialize;
use serde_json::Value;
use tracing::{error, info, warn};

use crate::error::{ApiError, ServerError};
use crate::util::{rfc3339_micros, sha256_hex};

/// The log's file name in the data directory.
pub const LOG_FILE: &str = "audit.log";
/// The chain head's file name in the data directory.
pub const HEAD_FILE: &str = "audit.head";
/// `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// `,"hash":"` + 64 hex digits + `"}`.
const HASH_SUFFIX_LEN: usize = 9 + 64 + 2;

/// What [`verify`] found wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit log line {line}: {reason}")]
pub struct AuditError {
    /// 1-based line of the first bad record (one past the end for records removed there).
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// An append that did not reach the disk.
#[derive(Debug, Clone, thiserror::Error)]
#[error("audit append failed: {0}")]
pub struct AppendError(pub String);

/// One record to append (the writer adds `seq`, `time`, `prev` and `hash`).
#[derive(Debug, Clone, Default)]
pub struct AuditEntry {
    /// `change`, `denied` or `alert`.
    pub record_type: &'static str,
    /// User name (empty when not authenticated).
    pub user: String,
    /// Verb (`create`, `update`, …) or the HTTP method when no verb applies.
    pub verb: String,
    /// Kind (rule name, e.g. `GlobalNetworkPolicy`); the path when no kind applies.
    pub kind: String,
    /// Namespace.
    pub namespace: Option<String>,
    /// Object name.
    pub name: Option<String>,
    /// Tier (policy kinds and tiers).
    pub tier: Option<String>,
    /// `created`, `updated`, `deleted`, `forbidden`, `unauthenticated`, `protected-tier`.
    pub outcome: String,
    /// HTTP status of the request.
    pub code: u16,
    /// The request id (also sent as `X-Request-Id`).
    pub request_id: String,
    /// Store revision of the change.
    pub revision: Option<u64>,
    /// Why (for denials and alerts).
    pub message: Option<String>,
    /// The object before (updates, deletes).
    pub before: Option<Value>,
    /// The object after (creates, updates).
    pub after: Option<Value>,
}

impl AuditEntry {
    /// A request rejected before it named a resource (401).
    pub fn denied(
        user: &str,
        method: &str,
        path: &str,
        error: &ApiError,
        request_id: String,
    ) -> Self {
        AuditEntry {
            record_type: "denied",
            user: user.to_string(),
            verb: method.to_ascii_lowercase(),
            kind: path.to_string(),
            outcome: if error.code.as_u16() == 401 {
                "unauthenticated".into()
            } else {
                "forbidden".into()
            },
            code: error.code.as_u16(),
            request_id,
            message: Some(error.message.clone()),
            ..AuditEntry::default()
        }
    }
}

/// The serialised form; field order is the line's order, `hash` is added after.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Line<'a> {
    seq: u64,
    time: &'a str,
    #[serde(rename = "type")]
    record_type: &'a str,
    user: &'a str,
    verb: &'a str,
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tier: Option<&'a str>,
    outcome: &'a str,
    code: u16,
    request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    revision: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    before: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    after: Option<&'a Value>,
    prev: &'a str,
}

/// Renders one record line (with its newline) and returns it with its hash.
fn render(
    entry: &AuditEntry,
    seq: u64,
    time: &str,
    prev: &str,
) -> Result<(String, String), String> {
    let line = Line {
        seq,
        time,
        record_type: entry.record_type,
        user: &entry.user,
        verb: &entry.verb,
        kind: &entry.kind,
        namespace: entry.namespace.as_deref(),
        name: entry.name.as_deref(),
        tier: entry.tier.as_deref(),
        outcome: &entry.outcome,
        code: entry.code,
        request_id: &entry.request_id,
        revision: entry.revision,
        message: entry.message.as_deref(),
        before: entry.before.as_ref(),
        after: entry.after.as_ref(),
        prev,
    };
    let body = serde_json::to_string(&line).map_err(|e| e.to_string())?;
    let hash = sha256_hex(body.as_bytes());
    let mut text = body;
    text.pop(); // the closing brace
    text.push_str(",\"hash\":\"");
    text.push_str(&hash);
    text.push_str("\"}\n");
    Ok((text, hash))
}

/// The hash a line claims, and the hash of its content; `None` if the line does not end
/// with a `hash` member.
fn hashes(line: &str) -> Option<(&str, String)> {
    if line.len() < HASH_SUFFIX_LEN + 2 || !line.ends_with("\"}") {
        return None;
    }
    let cut = line.len() - HASH_SUFFIX_LEN;
    let suffix = line.get(cut..)?;
    let claimed = suffix.strip_prefix(",\"hash\":\"")?.strip_suffix("\"}")?;
    if claimed.len() != 64 || !claimed.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut body = String::with_capacity(cut + 1);
    body.push_str(&line[..cut]);
    body.push('}');
    Some((claimed, sha256_hex(body.as_bytes())))
}

/// The chain head: how many records the log holds and the hash of the last one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
struct Head {
    count: u64,
    hash: String,
}

fn head_path(log: &Path) -> PathBuf {
    log.with_file_name(HEAD_FILE)
}

fn read_head(path: &Path) -> Result<Option<Head>, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("{}: not a chain head: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn write_head(path: &Path, head: &Head) -> std::io::Result<()> {
    let tmp = path.with_extension("head.tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(
        serde_json::to_string(head)
            .map_err(std::io::Error::other)?
            .as_bytes(),
    )?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Checks the log at `path` (and the head file next to it) and returns the number of
/// records. Names the first record that was edited, reordered or removed (also at the end).
pub fn verify(path: impl AsRef<Path>) -> Result<usize, AuditError> {
    let path = path.as_ref();
    let head = read_head(&head_path(path)).map_err(|reason| AuditError { line: 0, reason })?;
    let text = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(AuditError {
                line: 0,
                reason: format!("{}: {e}", path.display()),
            });
        }
    };
    let text = String::from_utf8(text).map_err(|e| AuditError {
        line: 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count(),
        reason: "not UTF-8: the record was edited or damaged".into(),
    })?;
    let mut prev = GENESIS.to_string();
    let mut hashes_seen: Vec<String> = Vec::new();
    let mut rest = text.as_str();
    let mut line_no = 0usize;
    while !rest.is_empty() {
        line_no += 1;
        let Some((line, after)) = rest.split_once('\n') else {
            return Err(AuditError {
                line: line_no,
                reason: "the last record is cut short (no newline): truncated or edited".into(),
            });
        };
        rest = after;
        let bad = |reason: String| AuditError {
            line: line_no,
            reason,
        };
        let (claimed, actual) =
            hashes(line).ok_or_else(|| bad("not a chained record (no trailing hash)".into()))?;
        if claimed != actual {
            return Err(bad(
                "the record was edited: its hash does not match its content".into(),
            ));
        }
        let record: Value =
            serde_json::from_str(line).map_err(|e| bad(format!("not a JSON record: {e}")))?;
        let seq = record.get("seq").and_then(Value::as_u64);
        if seq != Some(line_no as u64) {
            return Err(bad(format!(
                "record out of place: it is record {} but sits at position {line_no}: records were removed, inserted or reordered",
                seq.map_or_else(|| "?".to_string(), |s| s.to_string())
            )));
        }
        if record.get("prev").and_then(Value::as_str) != Some(prev.as_str()) {
            return Err(bad(
                "chain broken: prev is not the hash of the record before it (removed, inserted or reordered records)".into(),
            ));
        }
        prev = claimed.to_string();
        hashes_seen.push(prev.clone());
    }
    let count = hashes_seen.len();
    match head {
        None if count == 0 => Ok(0),
        None => Err(AuditError {
            line: 0,
            reason: format!("the chain head file {HEAD_FILE} is missing"),
        }),
        Some(head) => {
            let head_count = usize::try_from(head.count).unwrap_or(usize::MAX);
            if head_count > count {
                return Err(AuditError {
                    line: count + 1,
                    reason: format!(
                        "the log ends after record {count} but the chain head records {}: records were removed from the end",
                        head.count
                    ),
                });
            }
            if head_count > 0 && hashes_seen[head_count - 1] != head.hash {
                return Err(AuditError {
                    line: head_count,
                    reason: "the record does not match the chain head: the log was rewritten"
                        .into(),
                });
            }
            if head_count == 0 && head.hash != GENESIS {
                return Err(AuditError {
                    line: 0,
                    reason: "the chain head is damaged".into(),
                });
            }
            Ok(count)
        }
    }
}

/// Counters the writer keeps, for `/metrics`.
#[derive(Debug, Default)]
pub struct AuditStats {
    /// Records in the log.
    pub records: AtomicU64,
    /// Appends that failed.
    pub failures: AtomicU64,
    /// The chain verified at start.
    pub chain_ok: AtomicBool,
    /// The last append failed (`/healthz` reports it).
    pub failing: AtomicBool,
}

struct Batch {
    entries: Vec<AuditEntry>,
    done: tokio::sync::oneshot::Sender<Result<(), String>>,
}

/// The open audit log. Appends go through one writer thread.
#[derive(Debug)]
pub struct AuditLog {
    tx: mpsc::Sender<Batch>,
    path: PathBuf,
    /// Counters.
    pub stats: Arc<AuditStats>,
}

impl AuditLog {
    /// Opens (creating) `<dir>/audit.log`: cuts off a half-written last line, verifies the
    /// chain (a broken chain is logged and reported in `/metrics`, and appending goes on from
    /// the last record), moves the head forward over records a crash left unconfirmed, and
    /// starts the writer thread.
    pub fn open(dir: &Path) -> Result<AuditLog, ServerError> {
        let path = dir.join(LOG_FILE);
        let io = |e| ServerError::io(&path, e);
        // Records carry whole objects: owner-only, like the data directory.
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        let len = cut_partial_line(&mut file, &path).map_err(io)?;
        let (count, last_hash) = last_record(&path).map_err(io)?;
        let stats = Arc::new(AuditStats::default());
        stats.records.store(count, Ordering::Relaxed);
        match verify(&path) {
            Ok(n) => {
                stats.chain_ok.store(true, Ordering::Relaxed);
                let head = read_head(&head_path(&path)).ok().flatten();
                if head.as_ref().is_none_or(|h| h.count < n as u64) {
                    write_head(
                        &head_path(&path),
                        &Head {
                            count,
                            hash: last_hash.clone(),
                        },
                    )
                    .map_err(|e| ServerError::io(head_path(&path), e))?;
                }
                info!(path = %path.display(), records = n, head = %last_hash, "audit log verified");
            }
            Err(e) => error!(path = %path.display(), error = %e,
                "AUDIT CHAIN BROKEN: the log was tampered with or damaged; appending continues after the last record"),
        }
        let (tx, rx) = mpsc::channel();
        let mut writer = Writer {
            file,
            len,
            head_path: head_path(&path),
            seq: count,
            prev: last_hash,
            stats: Arc::clone(&stats),
        };
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| ServerError::Audit(format!("cannot start the writer thread: {e}")))?;
        Ok(AuditLog { tx, path, stats })
    }

    /// Appends `entries` (consecutively) and returns once they are on disk.
    pub async fn append(&self, entries: Vec<AuditEntry>) -> Result<(), AppendError> {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.tx
            .send(Batch { entries, done })
            .map_err(|_| AppendError("the audit writer has stopped".into()))?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(AppendError(e)),
            Err(_) => Err(AppendError("the audit writer has stopped".into())),
        }
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Truncates the file after its last newline; returns the new length.
fn cut_partial_line(file: &mut File, path: &Path) -> std::io::Result<u64> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(0);
    }
    // Scan backwards in blocks for the last newline.
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    let mut keep = 0u64;
    'scan: while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let n = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf[..n])?;
        if let Some(i) = buf[..n].iter().rposition(|b| *b == b'\n') {
            keep = start + i as u64 + 1;
            break 'scan;
        }
        end = start;
    }
    if keep < len {
        warn!(path = %path.display(), bytes = len - keep,
            "cutting off a half-written audit record left by a crash (it was never acknowledged)");
        file.set_len(keep)?;
        file.sync_all()?;
    }
    Ok(keep)
}

/// The number of lines and the hash of the last record (the genesis hash for an empty log).
fn last_record(path: &Path) -> std::io::Result<(u64, String)> {
    let reader = BufReader::new(File::open(path)?);
    let mut count = 0u64;
    let mut last = GENESIS.to_string();
    for line in reader.split(b'\n') {
        let line = line?;
        count += 1;
        let text = String::from_utf8_lossy(&line);
        last = match hashes(&text) {
            Some((claimed, _)) => claimed.to_string(),
            // A damaged last line: chain on from what is there, so the damage stays visible.
            None => sha256_hex(&line),
        };
    }
    Ok((count, last))
}

struct Writer {
    file: File,
    len: u64,
    head_path: PathBuf,
    seq: u64,
    prev: String,
    stats: Arc<AuditStats>,
}

impl Writer {
    fn run(&mut self, rx: mpsc::Receiver<Batch>) {
        while let Ok(first) = rx.recv() {
            let mut batches = vec![first];
            while batches.len() < 1024
                && let Ok(more) = rx.try_recv()
            {
                batches.push(more);
            }
            let result = self.write(&batches);
            if let Err(e) = &result {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                error!(error = %e, "audit append failed");
            }
            self.stats.failing.store(result.is_err(), Ordering::Relaxed);
            for batch in batches {
                let _ = batch.done.send(result.clone());
            }
        }
    }

    /// Writes every entry of `batches`, fsyncs, and moves the head. On failure the file is
    /// cut back to where it was and the chain state is unchanged.
    fn write(&mut self, batches: &[Batch]) -> Result<(), String> {
        let time = rfc3339_micros(SystemTime::now());
        let mut text = String::new();
        let mut seq = self.seq;
        let mut prev = self.prev.clone();
        for entry in batches.iter().flat_map(|b| &b.entries) {
            seq += 1;
            let (line, hash) = render(entry, seq, &time, &prev)?;
            text.push_str(&line);
            prev = hash;
        }
        let written = self
            .file
            .write_all(text.as_bytes())
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            let _ = self.file.set_len(self.len);
            return Err(e.to_string());
        }
        self.len += text.len() as u64;
        self.seq = seq;
        self.prev = prev;
        self.stats.records.store(seq, Ordering::Relaxed);
        // The records are durable; a failed head update only leaves them unconfirmed (the
        // next start or append repairs it), so it is reported but does not fail the append.
        if let Err(e) = write_head(
            &self.head_path,
            &Head {
                count: self.seq,
                hash: self.prev.clone(),
            },
        ) {
            warn!(error = %e, "cannot update the audit chain head");
        }
        Ok(())
    }
}

/// Filters for [`query`].
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Records at or after this time.
    pub since: Option<SystemTime>,
    /// User name.
    pub user: Option<String>,
    /// Kind.
    pub kind: Option<String>,
    /// Tier.
    pub tier: Option<String>,
    /// Record type (`change`, `denied`, `alert`).
    pub record_type: Option<String>,
    /// At most this many records (the oldest matching first).
    pub limit: usize,
}

/// Reads the records at `path` that match `q`; also returns how many more matched beyond
/// the limit.
pub fn query(path: &Path, q: &Query) -> std::io::Result<(Vec<Value>, usize)> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e),
    };
    let field = |r: &Value, name: &str| r.get(name).and_then(Value::as_str).map(str::to_string);
    let mut out = Vec::new();
    let mut more = 0usize;
    for line in BufReader::new(file).lines() {
        let line = line?;
        let Ok(record) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let wanted = |filter: &Option<String>, name: &str| {
            filter
                .as_ref()
                .is_none_or(|f| field(&record, name).as_deref() == Some(f.as_str()))
        };
        if !(wanted(&q.user, "user")
            && wanted(&q.kind, "kind")
            && wanted(&q.tier, "tier")
            && wanted(&q.record_type, "type"))
        {
            continue;
        }
        if let Some(since) = q.since {
            let time = field(&record, "time").and_then(|t| crate::util::parse_rfc3339(&t));
            if time.is_none_or(|t| t < since) {
                continue;
            }
        }
        if out.len() < q.limit {
            out.push(record);
        } else {
            more += 1;
        }
    }
    Ok((out, more))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rendered_line_verifies_its_own_hash() {
        let entry = AuditEntry {
            record_type: "change",
            user: "alice".into(),
            after: Some(serde_json::json!({"a": "x\"}\n"})),
            ..AuditEntry::default()
        };
        let (line, hash) =
            render(&entry, 1, "2026-01-01T00:00:00.000000Z", GENESIS).expect("render");
        let (claimed, actual) = hashes(line.trim_end()).expect("hash member");
        assert_eq!(claimed, hash);
        assert_eq!(actual, hash);
        let v: Value = serde_json::from_str(&line).expect("JSON");
        assert_eq!(v["hash"], hash.as_str());
        assert_eq!(v["prev"], GENESIS);
    }
}
