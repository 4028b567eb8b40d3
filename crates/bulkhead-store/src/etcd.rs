//! The etcd v3 backend.
//!
//! Keys are stored as `namespace + key`; revisions are etcd's. Conditional writes are etcd
//! transactions: `Expect::Absent` compares `create_revision == 0`, `Expect::ModRevision(r)`
//! compares `mod_revision == r`, and the else branch reads the key so that a conflict reports
//! the current value from the same atomic step. Watches use `start_revision`, `prev_kv` and
//! progress notifications; etcd's compaction cancel becomes [`StoreError::Compacted`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, KvClient, Txn, TxnOp,
    TxnOpResponse, WatchClient, WatchOptions,
};
use tracing::{debug, info};

use crate::{Expect, KeyValue, Result, Revision, Store, StoreError, WatchEvent, WatchStream};

/// Options of the [`EtcdStore`].
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    /// Client URLs of the etcd cluster, e.g. `http://127.0.0.1:2379`. (TLS is not built in
    /// yet: use `http://` endpoints on a trusted network.)
    pub endpoints: Vec<String>,
    /// Prefix put before every key in etcd, so that several Bulkhead clusters (or other
    /// applications) can share one etcd. Empty by default. Revisions stay etcd's global ones.
    pub namespace: String,
    /// Time allowed to connect and for the first request at [`EtcdStore::connect`]. Default 5 s.
    pub connect_timeout: Duration,
    /// Time allowed for each get, list page, put, delete or compaction; `None` waits as long
    /// as etcd needs (requests wait while no endpoint is reachable). A write that times out
    /// has an unknown outcome, as after any cancellation. Default 30 s.
    pub request_timeout: Option<Duration>,
    /// Keys per request when listing. Default 500.
    pub page_size: u32,
    /// Largest gRPC message accepted from etcd (a list page, a watch response). Default 64 MiB.
    pub max_message_size: usize,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        Self {
            endpoints: vec!["http://127.0.0.1:2379".into()],
            namespace: String::new(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Some(Duration::from_secs(30)),
            page_size: 500,
            max_message_size: 64 << 20,
        }
    }
}

/// The etcd store. Cheap to clone; clones share one gRPC connection. Several servers, each
/// with its own `EtcdStore` on the same etcd cluster and namespace, see the same state.
#[derive(Clone)]
pub struct EtcdStore {
    clients: Arc<Clients>,
    namespace: Arc<str>,
    options: Arc<EtcdOptions>,
}

/// The gRPC clients (large; shared by clones of the store, cloned per call: cheap).
struct Clients {
    kv: KvClient,
    watch: WatchClient,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("options", &self.options)
            .finish()
    }
}

impl EtcdStore {
    /// Connects to etcd and checks that it answers (within `connect_timeout`).
    pub async fn connect(options: EtcdOptions) -> Result<Self> {
        let connect = ConnectOptions::new()
            .with_connect_timeout(options.connect_timeout)
            // Detect dead connections under long-lived watches.
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_keep_alive_while_idle(true);
        let client = tokio::time::timeout(
            options.connect_timeout,
            Client::connect(&options.endpoints, Some(connect)),
        )
        .await
        .map_err(|_| unavailable(&options, "connect"))??;
        let store = Self {
            clients: Arc::new(Clients {
                kv: client
                    .kv_client()
                    .max_decoding_message_size(options.max_message_size),
                watch: client
                    .watch_client()
                    .max_decoding_message_size(options.max_message_size),
            }),
            namespace: options.namespace.as_str().into(),
            options: Arc::new(options),
        };
        let revision = tokio::time::timeout(store.options.connect_timeout, store.revision_now())
            .await
            .map_err(|_| unavailable(&store.options, "first request"))??;
        info!(endpoints = ?store.options.endpoints, namespace = %store.namespace, revision,
            "connected to etcd");
        Ok(store)
    }

    fn full_key(&self, key: &str) -> Vec<u8> {
        let mut full = Vec::with_capacity(self.namespace.len() + key.len());
        full.extend_from_slice(self.namespace.as_bytes());
        full.extend_from_slice(key.as_bytes());
        full
    }

    fn to_kv(&self, kv: &etcd_client::KeyValue) -> Result<KeyValue> {
        Ok(KeyValue {
            key: self.strip(kv.key())?,
            value: kv.value().to_vec(),
            create_revision: revision(kv.create_revision())?,
            mod_revision: revision(kv.mod_revision())?,
        })
    }

    fn strip(&self, full: &[u8]) -> Result<String> {
        let lossy = || StoreError::InvalidKey(String::from_utf8_lossy(full).into_owned());
        let key = full
            .strip_prefix(self.namespace.as_bytes())
            .ok_or_else(lossy)?;
        String::from_utf8(key.to_vec()).map_err(|_| lossy())
    }

    /// Applies the request timeout to one etcd call.
    async fn timed<T>(
        &self,
        what: &'static str,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        match self.options.request_timeout {
            Some(limit) => tokio::time::timeout(limit, call)
                .await
                .map_err(|_| unavailable(&self.options, what))?,
            None => call.await,
        }
    }

    async fn revision_now(&self) -> Result<Revision> {
        // A count-only read of one key: the header carries the store's revision.
        let key = if self.namespace.is_empty() {
            vec![0]
        } else {
            self.full_key("")
        };
        let resp = self
            .clients
            .kv
            .clone()
            .get(key, Some(GetOptions::new().with_count_only()))
            .await?;
        header_revision(resp.header())
    }

    async fn list_once(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision)> {
        let (mut start, end) = prefix_range(&self.full_key(prefix));
        let mut at: i64 = 0;
        let mut items = Vec::new();
        loop {
            let mut options = GetOptions::new()
                .with_range(end.clone())
                .with_limit(i64::from(self.options.page_size.max(1)));
            if at > 0 {
                // Later pages read the same snapshot as the first.
                options = options.with_revision(at);
            }
            let resp = self
                .clients
                .kv
                .clone()
                .get(start.clone(), Some(options))
                .await?;
            if at == 0 {
                at = resp.header().map_or(0, |h| h.revision());
            }
            for kv in resp.kvs() {
                items.push(self.to_kv(kv)?);
            }
            match resp.kvs().last() {
                Some(last) if resp.more() => {
                    start = last.key().to_vec();
                    start.push(0);
                }
                _ => break,
            }
        }
        Ok((items, revision(at)?))
    }

    /// Runs a conditional transaction: `then` if `expect` holds, else reads the key.
    async fn txn(&self, full: &[u8], expect: Expect, then: Vec<TxnOp>) -> Result<TxnOutcome> {
        let compare = match expect {
            Expect::Any => None,
            Expect::Absent => Some(Compare::create_revision(full, CompareOp::Equal, 0)),
            Expect::ModRevision(r) => {
                Some(Compare::mod_revision(full, CompareOp::Equal, to_i64(r)))
            }
        };
        let mut txn = Txn::new();
        if let Some(compare) = compare {
            txn = txn.when(vec![compare]);
        }
        let txn = txn.and_then(then).or_else(vec![TxnOp::get(full, None)]);
        let resp = self.clients.kv.clone().txn(txn).await?;
        let revision = header_revision(resp.header())?;
        let responses = resp.op_responses();
        if resp.succeeded() {
            return Ok(TxnOutcome::Done {
                revision,
                responses,
            });
        }
        let current = match responses.first() {
            Some(TxnOpResponse::Get(get)) => {
                get.kvs().first().map(|kv| self.to_kv(kv)).transpose()?
            }
            _ => None,
        };
        Ok(TxnOutcome::Failed(current))
    }
}

enum TxnOutcome {
    Done {
        revision: Revision,
        responses: Vec<TxnOpResponse>,
    },
    Failed(Option<KeyValue>),
}

fn conflict(key: &str, expect: Expect, current: Option<KeyValue>) -> StoreError {
    StoreError::Conflict {
        key: key.to_owned(),
        expected: expect,
        current: current.map(Box::new),
    }
}

fn unavailable(options: &EtcdOptions, what: &str) -> StoreError {
    StoreError::Timeout(format!("{what} (endpoints {:?})", options.endpoints))
}

/// etcd revisions are `i64`, never negative.
fn revision(r: i64) -> Result<Revision> {
    Revision::try_from(r).map_err(|_| StoreError::Corrupt(format!("etcd returned revision {r}")))
}

/// A revision beyond `i64::MAX` is in the far future: clamp it (it never matches, is never
/// reached).
fn to_i64(r: Revision) -> i64 {
    i64::try_from(r).unwrap_or(i64::MAX)
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Result<Revision> {
    let header =
        header.ok_or_else(|| StoreError::Corrupt("etcd response without a header".into()))?;
    revision(header.revision())
}

/// The etcd range `[start, end)` of every key starting with `prefix` (all keys for `""`).
fn prefix_range(prefix: &[u8]) -> (Vec<u8>, Vec<u8>) {
    if prefix.is_empty() {
        return (vec![0], vec![0]);
    }
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return (prefix.to_vec(), end);
        }
    }
    // All 0xff: every key from the prefix on.
    (prefix.to_vec(), vec![0])
}

/// Whether etcd refused because the requested revision was compacted.
fn is_compacted(error: &etcd_client::Error) -> bool {
    // etcd's ErrGRPCCompacted (code OutOfRange): "etcdserver: mvcc: required revision has
    // been compacted".
    matches!(error, etcd_client::Error::GRpcStatus(status)
        if status.message().contains("required revision has been compacted"))
}

impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        crate::check_key(key)?;
        let full = self.full_key(key);
        self.timed("get", async {
            let resp = self.clients.kv.clone().get(full, None).await?;
            resp.kvs().first().map(|kv| self.to_kv(kv)).transpose()
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision)> {
        // A compaction between pages invalidates the snapshot: start again (a few times).
        let mut attempts = 0;
        loop {
            match self.timed("list", self.list_once(prefix)).await {
                Err(StoreError::Etcd(e)) if is_compacted(&e) && attempts < 3 => attempts += 1,
                other => return other,
            }
        }
    }

    async fn put(&self, key: &str, value: Vec<u8>, expect: Expect) -> Result<Revision> {
        crate::check_key(key)?;
        let full = self.full_key(key);
        self.timed("put", async {
            if expect == Expect::Any {
                let resp = self.clients.kv.clone().put(full, value, None).await?;
                return header_revision(resp.header());
            }
            match self
                .txn(&full, expect, vec![TxnOp::put(full.clone(), value, None)])
                .await?
            {
                TxnOutcome::Done { revision, .. } => Ok(revision),
                TxnOutcome::Failed(current) => Err(conflict(key, expect, current)),
            }
        })
        .await
        .inspect(|revision| debug!(key, revision, "etcd put"))
    }

    async fn delete(&self, key: &str, expect: Expect) -> Result<Option<Revision>> {
        crate::check_key(key)?;
        let full = self.full_key(key);
        self.timed("delete", async {
            let then = match expect {
                // Absent holds only when there is nothing to delete.
                Expect::Absent => vec![],
                _ => vec![TxnOp::delete(full.clone(), None)],
            };
            match self.txn(&full, expect, then).await? {
                TxnOutcome::Done {
                    revision,
                    responses,
                } => {
                    let deleted = responses
                        .iter()
                        .any(|r| matches!(r, TxnOpResponse::Delete(d) if d.deleted() > 0));
                    Ok(deleted.then_some(revision))
                }
                TxnOutcome::Failed(current) => Err(conflict(key, expect, current)),
            }
        })
        .await
    }

    async fn watch(&self, prefix: &str, from_revision: Revision) -> Result<WatchStream> {
        // Start at `from_revision` itself (skipping its events below) rather than the next one:
        // etcd then refuses exactly when history after `from_revision` may be incomplete, as
        // the embedded store does. Revision 0 means "now" to etcd; etcd's first revision is 1.
        let start = to_i64(from_revision.max(1));
        let full = self.full_key(prefix);
        let options = WatchOptions::new()
            .with_start_revision(start)
            .with_prev_key()
            .with_progress_notify();
        let (key, options) = if full.is_empty() {
            (vec![0], options.with_from_key())
        } else {
            (full, options.with_prefix())
        };
        let stream = self
            .timed("watch", async {
                let mut stream = self.clients.watch.clone().watch(key, Some(options)).await?;
                // The first response acknowledges the creation.
                match stream.message().await? {
                    Some(resp) if resp.canceled() => Err(watch_cancelled(&resp)),
                    Some(resp) if resp.created() => Ok(stream),
                    Some(_) => Err(StoreError::WatchEnded(
                        "etcd sent events before the created ack".into(),
                    )),
                    None => Err(StoreError::WatchEnded(
                        "etcd closed the watch before creating it".into(),
                    )),
                }
            })
            .await?;
        debug!(prefix, from_revision, "etcd watch");
        let state = EtcdWatch {
            stream,
            store: self.clone(),
            from: from_revision,
            ready: VecDeque::new(),
            done: false,
        };
        Ok(Box::pin(futures_util::stream::unfold(
            state,
            EtcdWatch::next,
        )))
    }

    async fn current_revision(&self) -> Result<Revision> {
        self.timed("current revision", self.revision_now()).await
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let current = self.current_revision().await?;
        if revision > current {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current,
            });
        }
        if revision == 0 {
            return Ok(());
        }
        let result = self.timed("compact", async {
            self.clients
                .kv
                .clone()
                .compact(to_i64(revision), None)
                .await?;
            Ok(())
        });
        match result.await {
            Err(StoreError::Etcd(e)) if is_compacted(&e) => Ok(()), // already compacted past it
            other => other.inspect(|()| info!(revision, "etcd history compacted")),
        }
    }
}

fn watch_cancelled(resp: &etcd_client::WatchResponse) -> StoreError {
    if resp.compact_revision() > 0 {
        StoreError::Compacted {
            oldest: Revision::try_from(resp.compact_revision()).unwrap_or(0),
        }
    } else {
        StoreError::WatchEnded(format!("cancelled by etcd: {}", resp.cancel_reason()))
    }
}

/// The state of one etcd watch stream. Dropping it drops the gRPC stream, which cancels the
/// watch on the server.
struct EtcdWatch {
    stream: etcd_client::WatchStream,
    store: EtcdStore,
    from: Revision,
    ready: VecDeque<WatchEvent>,
    done: bool,
}

impl EtcdWatch {
    async fn next(mut self) -> Option<(Result<WatchEvent>, Self)> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some((Ok(event), self));
            }
            if self.done {
                return None;
            }
            let error = match self.stream.message().await {
                Ok(Some(resp)) if resp.canceled() => watch_cancelled(&resp),
                // Events, or a progress notification (no events).
                Ok(Some(resp)) => match self.convert(&resp) {
                    Ok(()) => continue,
                    Err(e) => e,
                },
                Ok(None) => StoreError::WatchEnded("etcd closed the watch stream".into()),
                Err(e) => StoreError::Etcd(e),
            };
            self.done = true;
            return Some((Err(error), self));
        }
    }

    fn convert(&mut self, resp: &etcd_client::WatchResponse) -> Result<()> {
        for event in resp.events() {
            let Some(kv) = event.kv() else {
                return Err(StoreError::Corrupt("etcd watch event without a key".into()));
            };
            let converted = match event.event_type() {
                EventType::Put => WatchEvent::Put(self.store.to_kv(kv)?),
                EventType::Delete => WatchEvent::Delete {
                    key: self.store.strip(kv.key())?,
                    revision: revision(kv.mod_revision())?,
                    prev: event.prev_kv().map(|p| self.store.to_kv(p)).transpose()?,
                },
            };
            if converted.revision() > self.from {
                self.ready.push_back(converted);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ranges() {
        assert_eq!(prefix_range(b""), (vec![0], vec![0]));
        assert_eq!(prefix_range(b"/a/"), (b"/a/".to_vec(), b"/a0".to_vec()));
        assert_eq!(prefix_range(b"a\xff"), (b"a\xff".to_vec(), b"b".to_vec()));
        assert_eq!(prefix_range(b"\xff\xff"), (b"\xff\xff".to_vec(), vec![0]));
    }
}
