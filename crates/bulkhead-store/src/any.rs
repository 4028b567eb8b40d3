//! [`AnyStore`]: the backend chosen at run time.

use crate::{EmbeddedStore, EtcdStore, Expect, KeyValue, Result, Revision, Store, WatchStream};

/// Either backend, chosen at run time (from the server's configuration). A [`Store`] itself,
/// so code written against `impl Store` or `S: Store` works with both without boxing.
#[derive(Clone, Debug)]
pub enum AnyStore {
    /// The embedded store.
    Embedded(EmbeddedStore),
    /// The etcd store.
    Etcd(EtcdStore),
}

impl From<EmbeddedStore> for AnyStore {
    fn from(store: EmbeddedStore) -> Self {
        AnyStore::Embedded(store)
    }
}

impl From<EtcdStore> for AnyStore {
    fn from(store: EtcdStore) -> Self {
        AnyStore::Etcd(store)
    }
}

/// Calls the same method on whichever backend this is.
macro_rules! dispatch {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            AnyStore::Embedded($s) => $call.await,
            AnyStore::Etcd($s) => $call.await,
        }
    };
}

impl Store for AnyStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        dispatch!(self, s => s.get(key))
    }

    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision)> {
        dispatch!(self, s => s.list(prefix))
    }

    async fn put(&self, key: &str, value: Vec<u8>, expect: Expect) -> Result<Revision> {
        dispatch!(self, s => s.put(key, value, expect))
    }

    async fn delete(&self, key: &str, expect: Expect) -> Result<Option<Revision>> {
        dispatch!(self, s => s.delete(key, expect))
    }

    async fn watch(&self, prefix: &str, from_revision: Revision) -> Result<WatchStream> {
        dispatch!(self, s => s.watch(prefix, from_revision))
    }

    async fn current_revision(&self) -> Result<Revision> {
        dispatch!(self, s => s.current_revision())
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        dispatch!(self, s => s.compact(revision))
    }
}
