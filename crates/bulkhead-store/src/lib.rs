//! Revisioned key-value store with watch, for the Bulkhead control plane.
//!
//! One trait, [`Store`], and two backends that pass the same test suite:
//!
//! - [`EmbeddedStore`]: the default. One data directory holding one [`redb`] file, used by a
//!   single server process. Every acknowledged write is on disk (fsync) before the call
//!   returns, so it survives `kill -9` and power loss.
//! - [`EtcdStore`]: etcd v3. Several servers on one etcd cluster serve the same state.
//!
//! [`AnyStore`] picks one of the two at run time (from configuration) and is itself a
//! [`Store`]. The design (key layout, revisions, the watch contract, retention and the etcd
//! mapping) is in `docs/store.md`.
//!
//! ```no_run
//! use bulkhead_store::{EmbeddedOptions, EmbeddedStore, Expect, Store};
//! # async fn demo() -> Result<(), bulkhead_store::StoreError> {
//! let store = EmbeddedStore::open("/var/lib/bulkhead/store", EmbeddedOptions::default())?;
//! let rev = store.put("/projectcalico.org/NetworkPolicy/default/web", b"{}".to_vec(), Expect::Absent).await?;
//! let (items, list_rev) = store.list("/projectcalico.org/NetworkPolicy/").await?;
//! assert!(list_rev >= rev && items.len() == 1);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

use std::future::Future;
use std::pin::Pin;

use futures_util::Stream;

mod any;
mod embedded;
mod etcd;
#[cfg(feature = "testing")]
pub mod testing;

pub use any::AnyStore;
pub use embedded::{CheckReport, EmbeddedOptions, EmbeddedStore};
pub use etcd::{EtcdOptions, EtcdStore};

/// A store revision: a logical clock, one per store, that every successful write advances.
///
/// Revisions strictly increase but need not be consecutive (on a shared etcd, other clients'
/// writes use revisions too). `0` is "before any write": watching from `0` replays the whole
/// retained history.
pub type Revision = u64;

/// A stored key with its value and the revisions that created and last modified it.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key, e.g. `/projectcalico.org/NetworkPolicy/default/web`.
    pub key: String,
    /// The value: opaque bytes (the server stores JSON).
    pub value: Vec<u8>,
    /// Revision of the put that created the key (since it was last absent).
    pub create_revision: Revision,
    /// Revision of the last put to the key. This is the key's version for
    /// [`Expect::ModRevision`] (a Kubernetes-style `resourceVersion`).
    pub mod_revision: Revision,
}

impl std::fmt::Debug for KeyValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values can be megabytes: show their length, and the text only when it is short.
        let mut d = f.debug_struct("KeyValue");
        d.field("key", &self.key)
            .field("create_revision", &self.create_revision)
            .field("mod_revision", &self.mod_revision);
        match std::str::from_utf8(&self.value) {
            Ok(text) if text.len() <= 64 => d.field("value", &text),
            _ => d.field("value_len", &self.value.len()),
        };
        d.finish()
    }
}

/// The condition a write needs to hold, checked atomically with the write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// No condition.
    Any,
    /// The key must not exist (create).
    Absent,
    /// The key's current `mod_revision` must be exactly this (update or delete of the version
    /// the caller read). `ModRevision(0)` matches an absent key, as in etcd.
    ModRevision(Revision),
}

/// One change, as delivered by [`Store::watch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// The key was created or updated; its `mod_revision` is the event's revision.
    Put(KeyValue),
    /// The key was deleted.
    Delete {
        /// The deleted key.
        key: String,
        /// The revision of the delete.
        revision: Revision,
        /// The key's last value before the delete. Always present from the embedded store;
        /// etcd omits it when the previous version was already compacted.
        prev: Option<KeyValue>,
    },
}

impl WatchEvent {
    /// The revision at which the change happened.
    pub fn revision(&self) -> Revision {
        match self {
            WatchEvent::Put(kv) => kv.mod_revision,
            WatchEvent::Delete { revision, .. } => *revision,
        }
    }

    /// The key that changed.
    pub fn key(&self) -> &str {
        match self {
            WatchEvent::Put(kv) => &kv.key,
            WatchEvent::Delete { key, .. } => key,
        }
    }
}

/// The stream returned by [`Store::watch`]. It ends after the first error.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, StoreError>> + Send + 'static>>;

/// Errors from a [`Store`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The write's [`Expect`] did not hold; nothing was written. `current` is the key as it
    /// is now (`None`: absent), so the caller can re-read and retry, or report a conflict.
    #[error("conflict on {key}: expected {expected:?}, current mod_revision {}",
        current.as_ref().map_or(0, |kv| kv.mod_revision))]
    Conflict {
        /// The key written.
        key: String,
        /// The condition that failed.
        expected: Expect,
        /// The key's current state.
        current: Option<Box<KeyValue>>,
    },
    /// The history needed to watch from the requested revision was discarded. Relist, and
    /// watch from the list's revision. `oldest` is the smallest `from_revision` that can
    /// still be watched.
    #[error("revision compacted: the oldest revision that can be watched from is {oldest}")]
    Compacted {
        /// Smallest `from_revision` still accepted by [`Store::watch`].
        oldest: Revision,
    },
    /// A revision after the store's current revision was given where it cannot be (compact).
    #[error("revision {requested} is in the future (current revision {current})")]
    FutureRevision {
        /// The revision asked for.
        requested: Revision,
        /// The store's current revision.
        current: Revision,
    },
    /// The key is not usable: empty, or (etcd) not UTF-8.
    #[error("invalid key {0:?}")]
    InvalidKey(String),
    /// The store was closed (every handle dropped) while a watch was still open.
    #[error("store closed")]
    Closed,
    /// The stored data does not decode: the file was written by something else, or is damaged.
    #[error("corrupt store data: {0}")]
    Corrupt(String),
    /// An error of the embedded database (I/O, corruption, already open by another process).
    #[error("embedded store: {0}")]
    Embedded(#[from] redb::Error),
    /// An error talking to etcd (connection, server error).
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    /// etcd did not answer in time (see `EtcdOptions`); a write's outcome is unknown.
    #[error("etcd: {0} timed out")]
    Timeout(String),
    /// etcd ended or cancelled a watch for a reason other than compaction.
    #[error("etcd watch ended: {0}")]
    WatchEnded(String),
    /// A blocking task of the embedded store panicked or was cancelled at shutdown.
    #[error("store task failed: {0}")]
    Task(String),
}

/// The result type of [`Store`] operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A revisioned key-value store with watch, shaped like etcd's v3 API.
///
/// Keys are non-empty UTF-8 strings, sorted bytewise; by convention resources live at
/// `/<apiGroup>/<Kind>/<namespace>/<name>` (cluster-scoped kinds: `/<apiGroup>/<Kind>/<name>`,
/// see `docs/store.md`). Values are opaque bytes.
///
/// # Revisions
///
/// The store has one global revision, a counter that every successful put or delete
/// advances. Each write returns its revision, and every key records the revision that
/// created it and the one that last modified it. Revisions strictly increase; they are not
/// necessarily consecutive. A write that changes nothing (a delete of an absent key, a write
/// whose [`Expect`] fails) does not advance the revision.
///
/// # Atomicity and ordering
///
/// Each put or delete is atomic: its [`Expect`] is checked and the write applied in one
/// step, so two writers that both read `mod_revision` 7 and both write with
/// `Expect::ModRevision(7)` cannot both succeed; one gets [`StoreError::Conflict`].
/// Operations are linearizable: once a write has returned, every later `get`, `list` and
/// `watch`, through any handle on the same store (any server on the same etcd), sees it.
/// [`Store::list`] is a consistent snapshot at the revision it returns.
///
/// # Durability
///
/// A write that returned `Ok` is durable: the embedded store has committed and fsynced it
/// (it survives `kill -9` and power loss), etcd has committed it to a quorum's log.
///
/// # Watch
///
/// [`Store::watch`]`(prefix, from)` delivers every change to a key under `prefix` with a
/// revision greater than `from`, in revision order, with no gaps and no repeats, first the
/// history and then live changes, until it is dropped or fails. The usual pattern is
/// list-then-watch: `list` returns a snapshot at revision `R`, and `watch(prefix, R)` continues
/// exactly after it. After a disconnect, resume with `watch(prefix, last_seen_revision)`.
///
/// History is bounded: if events after `from` were discarded (embedded retention, etcd
/// compaction) the watch fails with [`StoreError::Compacted`] (either from `watch` itself or
/// as the stream's first item); relist and watch from the list's revision. A stream also
/// fails if it falls behind by more than the retained history, if the etcd connection is lost
/// ([`StoreError::Etcd`]), or if the store is closed ([`StoreError::Closed`]). After an error
/// item the stream ends. Events of one revision are delivered together; Bulkhead writes one key
/// per revision, but other etcd clients may write several keys in one transaction.
///
/// # Cancellation
///
/// Dropping a watch stream cancels the watch and frees its resources (server side too, for
/// etcd). Dropping the future of a put or delete before it completes leaves the outcome
/// unknown: the write may or may not have been applied (never half-applied). Read the key
/// again to find out; a conditional write makes a retry safe.
///
/// # Handles
///
/// Implementations are cheap to clone handles onto shared state and can be used from many
/// tasks at once. All returned futures are `Send`.
pub trait Store: Send + Sync + 'static {
    /// The key's current value, or `None` if it does not exist.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<KeyValue>>> + Send;

    /// Every key starting with `prefix` (`""`: all keys), sorted by key, and the revision
    /// at which this consistent snapshot was taken.
    fn list(&self, prefix: &str) -> impl Future<Output = Result<(Vec<KeyValue>, Revision)>> + Send;

    /// Creates or replaces `key` if `expect` holds, and returns the write's revision (the
    /// key's new `mod_revision`). Fails with [`StoreError::Conflict`] otherwise.
    fn put(
        &self,
        key: &str,
        value: Vec<u8>,
        expect: Expect,
    ) -> impl Future<Output = Result<Revision>> + Send;

    /// Deletes `key` if `expect` holds. Returns the delete's revision, or `None` if the key
    /// did not exist (nothing written, revision not advanced). Fails with
    /// [`StoreError::Conflict`] if `expect` does not hold.
    fn delete(
        &self,
        key: &str,
        expect: Expect,
    ) -> impl Future<Output = Result<Option<Revision>>> + Send;

    /// Watches every key starting with `prefix` for changes after `from_revision`. See the
    /// trait documentation for the contract.
    fn watch(
        &self,
        prefix: &str,
        from_revision: Revision,
    ) -> impl Future<Output = Result<WatchStream>> + Send;

    /// The store's current revision (the revision of the last write, or higher).
    fn current_revision(&self) -> impl Future<Output = Result<Revision>> + Send;

    /// Discards the change history up to and including `revision`: afterwards, watches from a
    /// revision below it fail with [`StoreError::Compacted`]. Current values are kept. A
    /// revision at or below an earlier compaction is a no-op; one above the current revision
    /// is [`StoreError::FutureRevision`]. The embedded store also compacts by itself (its
    /// retention); etcd compacts only when told (or by its own `--auto-compaction-*` flags).
    fn compact(&self, revision: Revision) -> impl Future<Output = Result<()>> + Send;
}

/// Checks a key given to `get`, `put` or `delete`.
pub(crate) fn check_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(StoreError::InvalidKey(String::new()));
    }
    Ok(())
}
