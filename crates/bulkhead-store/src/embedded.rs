//! The embedded backend: one redb file in a data directory.
//!
//! Tables:
//! - `kv`: key → `create_revision u64 | mod_revision u64 | value` (the current state);
//! - `history`: revision → event (put: the new key-value; delete: the last key-value), the
//!   retained change log that watches replay;
//! - `meta`: `revision` (the current revision), `compacted` (history holds every event after
//!   it), `format`.
//!
//! Every put or delete is one redb write transaction that updates all three tables and trims
//! the history to the retention, committed with immediate durability (fsync) before the call
//! returns. After the commit, and still under the writer lock so that events leave in revision
//! order, the event goes to an in-process broadcast that feeds live watchers.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::broadcast;
use tracing::{debug, info, warn};

use crate::{Expect, KeyValue, Result, Revision, Store, StoreError, WatchEvent, WatchStream};

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
const HISTORY: TableDefinition<u64, &[u8]> = TableDefinition::new("history");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

const META_REVISION: &str = "revision";
const META_COMPACTED: &str = "compacted";
const META_FORMAT: &str = "format";
const FORMAT: u64 = 1;

/// History entries a catching-up watcher reads per step.
const HISTORY_BATCH: usize = 256;

/// Options of the [`EmbeddedStore`].
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// How many revisions of history to keep for watches: after revision `r` is written,
    /// watching from a revision below `r - retention` fails with
    /// [`StoreError::Compacted`]. Minimum 1. Default 10 000.
    pub retention: u64,
    /// Live events buffered per watcher before a slow watcher falls back to reading the
    /// history from disk (it loses nothing, unless it falls out of the retention). Default
    /// 1024.
    pub watch_buffer: usize,
    /// redb page cache, in bytes. Default 64 MiB.
    pub cache_size: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            retention: 10_000,
            watch_buffer: 1024,
            cache_size: 64 << 20,
        }
    }
}

/// The embedded store: a data directory with one redb file, for one server process.
///
/// Cheap to clone; clones share the open database. The file is locked while open: a second
/// open (another process, or this one before every handle and watch stream was dropped) fails
/// with a [`StoreError::Embedded`] "already open" error. Watch streams do not keep the store
/// open: when the last handle is dropped they end with [`StoreError::Closed`].
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: redb::Database,
    /// Serialises writes with their broadcast, so events leave in revision order.
    writer: Mutex<()>,
    events: broadcast::Sender<Arc<WatchEvent>>,
    options: EmbeddedOptions,
    path: PathBuf,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.inner.path)
            .field("options", &self.inner.options)
            .finish()
    }
}

/// What [`EmbeddedStore::check`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckReport {
    /// redb's own integrity check passed without repair.
    pub clean: bool,
    /// The current revision.
    pub revision: Revision,
    /// History holds every event after this revision.
    pub compacted: Revision,
    /// Number of keys.
    pub keys: u64,
    /// Number of retained history events.
    pub history: u64,
}

/// Converts any redb error into a [`StoreError`].
trait Db<T> {
    fn db(self) -> Result<T>;
}

impl<T, E: Into<redb::Error>> Db<T> for std::result::Result<T, E> {
    fn db(self) -> Result<T> {
        self.map_err(|e| StoreError::Embedded(e.into()))
    }
}

impl EmbeddedStore {
    /// The database file inside the data directory.
    pub const FILE_NAME: &str = "bulkhead.redb";

    /// Opens (creating if needed) the store in `dir`. Blocks while redb opens the file,
    /// which after a crash includes a repair pass; call it at startup or from
    /// `spawn_blocking`.
    pub fn open(dir: impl AsRef<Path>, options: EmbeddedOptions) -> Result<Self> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Embedded(e.into()))?;
        let path = dir.join(Self::FILE_NAME);
        let mut builder = redb::Database::builder();
        builder.set_cache_size(options.cache_size);
        let repair_path = path.clone();
        builder.set_repair_callback(move |session| {
            info!(path = %repair_path.display(), progress = session.progress(),
                "repairing the embedded store after an unclean shutdown");
        });
        let db = builder.create(&path).db()?;

        // Create the tables and check the format in one transaction.
        let txn = db.begin_write().db()?;
        let (revision, compacted) = {
            let mut meta = txn.open_table(META).db()?;
            txn.open_table(KV).db()?;
            txn.open_table(HISTORY).db()?;
            let format = meta.get(META_FORMAT).db()?.map(|v| v.value());
            match format {
                None => {
                    meta.insert(META_FORMAT, FORMAT).db()?;
                }
                Some(FORMAT) => {}
                Some(other) => {
                    return Err(StoreError::Corrupt(format!(
                        "{}: store format {other}, this build reads format {FORMAT}",
                        path.display()
                    )));
                }
            }
            let revision = meta.get(META_REVISION).db()?.map_or(0, |v| v.value());
            let compacted = meta.get(META_COMPACTED).db()?.map_or(0, |v| v.value());
            (revision, compacted)
        };
        txn.commit().db()?;
        info!(path = %path.display(), revision, compacted, "embedded store open");

        let options = EmbeddedOptions {
            retention: options.retention.max(1),
            watch_buffer: options.watch_buffer.max(1),
            ..options
        };
        let (events, _) = broadcast::channel(options.watch_buffer);
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                writer: Mutex::new(()),
                events,
                options,
                path,
            }),
        })
    }

    /// Checks a closed store in `dir`: redb's integrity check (with repair, like an open after
    /// a crash) and Bulkhead's invariants (every record decodes, no key or event is newer than
    /// the current revision, the history starts after the compaction point). Opens the file
    /// exclusively, so the store must not be open elsewhere.
    pub fn check(dir: impl AsRef<Path>) -> Result<CheckReport> {
        let path = dir.as_ref().join(Self::FILE_NAME);
        let mut db = redb::Database::open(&path).db()?;
        let clean = db.check_integrity().db()?;
        let txn = db.begin_read().db()?;
        let meta = txn.open_table(META).db()?;
        let kv = txn.open_table(KV).db()?;
        let history = txn.open_table(HISTORY).db()?;
        let revision = meta.get(META_REVISION).db()?.map_or(0, |v| v.value());
        let compacted = meta.get(META_COMPACTED).db()?.map_or(0, |v| v.value());
        let corrupt =
            |what: String| Err(StoreError::Corrupt(format!("{}: {what}", path.display())));
        if compacted > revision {
            return corrupt(format!("compacted {compacted} > revision {revision}"));
        }
        for entry in kv.iter().db()? {
            let (key, value) = entry.db()?;
            let kv = decode_kv(key.value(), value.value())?;
            if kv.mod_revision > revision || kv.create_revision > kv.mod_revision {
                return corrupt(format!(
                    "key {} has revisions {kv:?} past {revision}",
                    kv.key
                ));
            }
        }
        let mut last = compacted;
        for entry in history.iter().db()? {
            let (rev, record) = entry.db()?;
            let rev = rev.value();
            decode_event(rev, record.value())?;
            if rev <= last || rev > revision {
                return corrupt(format!(
                    "history revision {rev} out of order (after {last}, current {revision})"
                ));
            }
            last = rev;
        }
        if revision > compacted && last != revision {
            return corrupt(format!(
                "history ends at {last}, current revision is {revision}"
            ));
        }
        Ok(CheckReport {
            clean,
            revision,
            compacted,
            keys: kv.len().db()?,
            history: history.len().db()?,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` on the blocking pool: redb calls block (reads may hit the disk, commits fsync).
    async fn blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

/// A write for [`Inner::write`].
enum Op {
    Put(Vec<u8>),
    Delete,
}

/// What a write transaction decided.
enum Applied {
    Written(Arc<WatchEvent>),
    /// Delete of an absent key: nothing to do.
    Unchanged,
    Conflict(Option<KeyValue>),
}

impl Inner {
    fn write(&self, key: &str, op: Op, expect: Expect) -> Result<Option<Revision>> {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let txn = self.db.begin_write().db()?;
        let applied = self.apply(&txn, key, op, expect)?;
        match applied {
            Applied::Written(event) => {
                txn.commit().db()?;
                let revision = event.revision();
                debug!(key, revision, "committed");
                // No receivers is fine: nobody is watching.
                let _ = self.events.send(event);
                Ok(Some(revision))
            }
            Applied::Unchanged => {
                txn.abort().db()?;
                Ok(None)
            }
            Applied::Conflict(current) => {
                txn.abort().db()?;
                Err(StoreError::Conflict {
                    key: key.to_owned(),
                    expected: expect,
                    current: current.map(Box::new),
                })
            }
        }
    }

    fn apply(
        &self,
        txn: &redb::WriteTransaction,
        key: &str,
        op: Op,
        expect: Expect,
    ) -> Result<Applied> {
        let mut kv = txn.open_table(KV).db()?;
        let mut history = txn.open_table(HISTORY).db()?;
        let mut meta = txn.open_table(META).db()?;

        let current = match kv.get(key).db()? {
            Some(v) => Some(decode_kv(key, v.value())?),
            None => None,
        };
        let holds = match expect {
            Expect::Any => true,
            Expect::Absent => current.is_none(),
            Expect::ModRevision(r) => current.as_ref().map_or(0, |c| c.mod_revision) == r,
        };
        if !holds {
            return Ok(Applied::Conflict(current));
        }
        let revision = meta.get(META_REVISION).db()?.map_or(0, |v| v.value()) + 1;
        let event = match op {
            Op::Put(value) => {
                let new = KeyValue {
                    key: key.to_owned(),
                    value,
                    create_revision: current.map_or(revision, |c| c.create_revision),
                    mod_revision: revision,
                };
                kv.insert(key, encode_kv(&new).as_slice()).db()?;
                history
                    .insert(revision, encode_event(TAG_PUT, &new).as_slice())
                    .db()?;
                WatchEvent::Put(new)
            }
            Op::Delete => {
                let Some(prev) = current else {
                    return Ok(Applied::Unchanged);
                };
                kv.remove(key).db()?;
                history
                    .insert(revision, encode_event(TAG_DELETE, &prev).as_slice())
                    .db()?;
                WatchEvent::Delete {
                    key: key.to_owned(),
                    revision,
                    prev: Some(prev),
                }
            }
        };
        meta.insert(META_REVISION, revision).db()?;
        // Retention: keep the events of the last `retention` revisions.
        if let Some(target) = revision.checked_sub(self.options.retention) {
            trim_history(&mut history, &mut meta, target)?;
        }
        Ok(Applied::Written(Arc::new(event)))
    }

    fn compact(&self, revision: Revision) -> Result<()> {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let txn = self.db.begin_write().db()?;
        {
            let mut history = txn.open_table(HISTORY).db()?;
            let mut meta = txn.open_table(META).db()?;
            let current = meta.get(META_REVISION).db()?.map_or(0, |v| v.value());
            if revision > current {
                return Err(StoreError::FutureRevision {
                    requested: revision,
                    current,
                });
            }
            trim_history(&mut history, &mut meta, revision)?;
        }
        txn.commit().db()?;
        info!(revision, "embedded store history compacted");
        Ok(())
    }

    fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let txn = self.db.begin_read().db()?;
        let kv = txn.open_table(KV).db()?;
        match kv.get(key).db()? {
            Some(v) => Ok(Some(decode_kv(key, v.value())?)),
            None => Ok(None),
        }
    }

    fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision)> {
        let txn = self.db.begin_read().db()?;
        let meta = txn.open_table(META).db()?;
        let kv = txn.open_table(KV).db()?;
        let revision = meta.get(META_REVISION).db()?.map_or(0, |v| v.value());
        let mut items = Vec::new();
        for entry in kv.range::<&str>(prefix..).db()? {
            let (key, value) = entry.db()?;
            let key = key.value();
            if !key.starts_with(prefix) {
                break;
            }
            items.push(decode_kv(key, value.value())?);
        }
        Ok((items, revision))
    }

    fn revisions(&self) -> Result<(Revision, Revision)> {
        let txn = self.db.begin_read().db()?;
        let meta = txn.open_table(META).db()?;
        let revision = meta.get(META_REVISION).db()?.map_or(0, |v| v.value());
        let compacted = meta.get(META_COMPACTED).db()?.map_or(0, |v| v.value());
        Ok((revision, compacted))
    }

    /// Reads up to [`HISTORY_BATCH`] history entries after `after`, keeping those under
    /// `prefix`. Returns them and the revision up to which the history was read (every
    /// event up to it has been considered), and whether that is the current revision.
    fn read_history(
        &self,
        prefix: &str,
        after: Revision,
    ) -> Result<(Vec<WatchEvent>, Revision, bool)> {
        let txn = self.db.begin_read().db()?;
        let meta = txn.open_table(META).db()?;
        let history = txn.open_table(HISTORY).db()?;
        let revision = meta.get(META_REVISION).db()?.map_or(0, |v| v.value());
        let compacted = meta.get(META_COMPACTED).db()?.map_or(0, |v| v.value());
        if after < compacted {
            return Err(StoreError::Compacted { oldest: compacted });
        }
        let mut events = Vec::new();
        let mut upto = after.max(revision);
        for (scanned, entry) in history.range(after.saturating_add(1)..).db()?.enumerate() {
            let (rev, record) = entry.db()?;
            let rev = rev.value();
            if scanned == HISTORY_BATCH {
                upto = rev - 1;
                break;
            }
            let event = decode_event(rev, record.value())?;
            if event.key().starts_with(prefix) {
                events.push(event);
            }
        }
        Ok((events, upto, upto >= revision))
    }
}

/// Drops history events up to and including `target` and records the compaction point.
fn trim_history(
    history: &mut redb::Table<u64, &[u8]>,
    meta: &mut redb::Table<&str, u64>,
    target: Revision,
) -> Result<()> {
    let compacted = meta.get(META_COMPACTED).db()?.map_or(0, |v| v.value());
    if target <= compacted {
        return Ok(());
    }
    history
        .retain_in(compacted.saturating_add(1)..=target, |_, _| false)
        .db()?;
    meta.insert(META_COMPACTED, target).db()?;
    Ok(())
}

impl Store for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        crate::check_key(key)?;
        let key = key.to_owned();
        self.blocking(move |inner| inner.get(&key)).await
    }

    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision)> {
        let prefix = prefix.to_owned();
        self.blocking(move |inner| inner.list(&prefix)).await
    }

    async fn put(&self, key: &str, value: Vec<u8>, expect: Expect) -> Result<Revision> {
        crate::check_key(key)?;
        let key = key.to_owned();
        let written = self
            .blocking(move |inner| inner.write(&key, Op::Put(value), expect))
            .await?;
        written.ok_or_else(|| StoreError::Corrupt("put wrote nothing".into()))
    }

    async fn delete(&self, key: &str, expect: Expect) -> Result<Option<Revision>> {
        crate::check_key(key)?;
        let key = key.to_owned();
        self.blocking(move |inner| inner.write(&key, Op::Delete, expect))
            .await
    }

    async fn watch(&self, prefix: &str, from_revision: Revision) -> Result<WatchStream> {
        // Subscribe before reading any history: every event committed after this point
        // reaches `live`, every one before is in the history; duplicates are dropped by
        // revision.
        let live = self.inner.events.subscribe();
        let (_, compacted) = self.blocking(Inner::revisions).await?;
        if from_revision < compacted {
            return Err(StoreError::Compacted { oldest: compacted });
        }
        debug!(prefix, from_revision, "watch");
        let state = WatchState {
            inner: Arc::downgrade(&self.inner),
            live,
            prefix: prefix.to_owned(),
            last: from_revision,
            catching_up: true,
            ready: VecDeque::new(),
            done: false,
        };
        Ok(Box::pin(futures_util::stream::unfold(
            state,
            WatchState::next,
        )))
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.blocking(Inner::revisions).await?.0)
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.blocking(move |inner| inner.compact(revision)).await
    }
}

/// The state of one embedded watch stream.
struct WatchState {
    inner: Weak<Inner>,
    live: broadcast::Receiver<Arc<WatchEvent>>,
    prefix: String,
    /// Every event up to this revision has been delivered or skipped (not under `prefix`).
    last: Revision,
    /// Reading history (true) or following the live broadcast (false).
    catching_up: bool,
    ready: VecDeque<WatchEvent>,
    done: bool,
}

impl WatchState {
    async fn next(mut self) -> Option<(Result<WatchEvent>, Self)> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some((Ok(event), self));
            }
            if self.done {
                return None;
            }
            if self.catching_up {
                if let Err(e) = self.catch_up().await {
                    self.done = true;
                    return Some((Err(e), self));
                }
                continue;
            }
            match self.live.recv().await {
                Ok(event) => {
                    let revision = event.revision();
                    if revision <= self.last {
                        continue; // already read from the history
                    }
                    if revision > self.last + 1 {
                        // Revisions are consecutive here: something was missed (it cannot be
                        // with the writer lock, but the history has it anyway).
                        self.catching_up = true;
                        continue;
                    }
                    self.last = revision;
                    if event.key().starts_with(&self.prefix) {
                        self.ready.push_back(WatchEvent::clone(&event));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    warn!(prefix = %self.prefix, missed, after = self.last,
                        "slow watcher fell behind the live buffer; reading the history");
                    self.catching_up = true;
                }
                Err(broadcast::error::RecvError::Closed) => {
                    self.done = true;
                    return Some((Err(StoreError::Closed), self));
                }
            }
        }
    }

    async fn catch_up(&mut self) -> Result<()> {
        let inner = self.inner.upgrade().ok_or(StoreError::Closed)?;
        let prefix = self.prefix.clone();
        let after = self.last;
        let (events, upto, at_head) =
            tokio::task::spawn_blocking(move || inner.read_history(&prefix, after))
                .await
                .map_err(|e| StoreError::Task(e.to_string()))??;
        self.ready.extend(events);
        self.last = upto;
        if at_head {
            self.catching_up = false;
        }
        Ok(())
    }
}

const TAG_PUT: u8 = 0;
const TAG_DELETE: u8 = 1;

/// `kv` table value: `create_revision u64 LE | mod_revision u64 LE | value`.
fn encode_kv(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + kv.value.len());
    out.extend_from_slice(&kv.create_revision.to_le_bytes());
    out.extend_from_slice(&kv.mod_revision.to_le_bytes());
    out.extend_from_slice(&kv.value);
    out
}

fn decode_kv(key: &str, bytes: &[u8]) -> Result<KeyValue> {
    let corrupt = || StoreError::Corrupt(format!("value of key {key:?} is {} bytes", bytes.len()));
    let (create, rest) = bytes.split_first_chunk::<8>().ok_or_else(corrupt)?;
    let (modified, value) = rest.split_first_chunk::<8>().ok_or_else(corrupt)?;
    Ok(KeyValue {
        key: key.to_owned(),
        value: value.to_vec(),
        create_revision: u64::from_le_bytes(*create),
        mod_revision: u64::from_le_bytes(*modified),
    })
}

/// `history` value: `tag u8 | key length u32 LE | key | kv table value` where the key-value is
/// the new one for a put and the last one for a delete.
fn encode_event(tag: u8, kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + kv.key.len() + 16 + kv.value.len());
    out.push(tag);
    // Keys longer than 4 GiB cannot reach here: redb limits keys and values to 3 GiB.
    out.extend_from_slice(&(kv.key.len() as u32).to_le_bytes());
    out.extend_from_slice(kv.key.as_bytes());
    out.extend_from_slice(&encode_kv(kv));
    out
}

fn decode_event(revision: Revision, bytes: &[u8]) -> Result<WatchEvent> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("history event {revision}: {what}"));
    let (&tag, rest) = bytes.split_first().ok_or_else(|| corrupt("empty"))?;
    let (len, rest) = rest
        .split_first_chunk::<4>()
        .ok_or_else(|| corrupt("truncated"))?;
    let len = u32::from_le_bytes(*len) as usize;
    if rest.len() < len {
        return Err(corrupt("truncated key"));
    }
    let (key, rest) = rest.split_at(len);
    let key = std::str::from_utf8(key).map_err(|_| corrupt("key is not UTF-8"))?;
    let kv = decode_kv(key, rest)?;
    match tag {
        TAG_PUT if kv.mod_revision == revision => Ok(WatchEvent::Put(kv)),
        TAG_DELETE if kv.mod_revision < revision => Ok(WatchEvent::Delete {
            key: kv.key.clone(),
            revision,
            prev: Some(kv),
        }),
        _ => Err(corrupt("bad tag or revision")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_encoding_round_trips() {
        let kv = KeyValue {
            key: "/a/b".into(),
            value: b"hello".to_vec(),
            create_revision: 3,
            mod_revision: 7,
        };
        assert_eq!(
            decode_event(7, &encode_event(TAG_PUT, &kv)).ok(),
            Some(WatchEvent::Put(kv.clone()))
        );
        let deleted = decode_event(9, &encode_event(TAG_DELETE, &kv)).ok();
        assert_eq!(
            deleted,
            Some(WatchEvent::Delete {
                key: "/a/b".into(),
                revision: 9,
                prev: Some(kv.clone())
            })
        );
        // A put recorded under another revision, and truncated records, are corrupt.
        assert!(decode_event(8, &encode_event(TAG_PUT, &kv)).is_err());
        let bytes = encode_event(TAG_PUT, &kv);
        for cut in 0..bytes.len() - kv.value.len() {
            assert!(decode_event(7, &bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}
