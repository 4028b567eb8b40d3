//! Resources from the Bulkhead server: list every kind, then watch each from its list's
//! revision, keeping a local copy whose changes [`ServerSource::poll`] hands to the agent
//! as upserts and deletes (only what changed: a change costs the same in a cluster of 60
//! objects or 60,000).
//!
//! One background thread per kind lists, then watches, the way Kubernetes informers do.
//! Each remembers the last revision it saw (from events and bookmarks) and reconnects
//! from it after a disconnect, so no change is missed or applied twice; a revision the
//! server no longer keeps (410 `Expired`) makes it list that kind again. While the
//! server is away nothing changes locally: `poll` returns `None` and the agent keeps
//! enforcing the last state. Nothing is handed over before every kind has been listed
//! once, so the agent never enforces a partial view (policies without their tiers,
//! endpoints without their policies).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

use bulkhead_api::{Kind, LoadErrors, Resource, ResourceKey};
use bulkhead_calc::Update;
use bulkhead_client::{Client, Error, WatchEvent};

use crate::fingerprint::{Fingerprint, Fingerprints};

/// What a kind's thread reports. (Resources are kept inline, as in `Resource` itself.)
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
enum Message {
    /// A (re)list: every object of the kind, replacing what was held.
    Replace {
        kind: Kind,
        items: Vec<Resource>,
        invalid: Vec<(ResourceKey, LoadErrors)>,
    },
    /// An object was added or changed.
    Put(Resource),
    /// An object was added or changed, but does not load here.
    Invalid(ResourceKey, LoadErrors),
    /// An object was deleted.
    Remove(ResourceKey),
}

/// What is known locally of one object: the digest of its version (the calc graph keeps
/// the resource), or why it does not load here.
#[derive(Debug, Clone, PartialEq)]
enum Entry {
    Valid(Fingerprint),
    Invalid(LoadErrors),
}

/// How long to wait before retrying after a failure, at first and at most.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// The server as the agent's source of resources.
pub struct ServerSource {
    rx: Receiver<Message>,
    state: BTreeMap<ResourceKey, Entry>,
    listed: BTreeSet<Kind>,
    /// Something changed since the last poll.
    changed: bool,
    /// What changed since the agent last took the changes: each key's last version, or
    /// its deletion (objects that do not load have none: they block every hand-over).
    pending: BTreeMap<ResourceKey, Update>,
    fingerprints: Fingerprints,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for ServerSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSource")
            .field("objects", &self.state.len())
            .field("listed", &self.listed.len())
            .finish()
    }
}

impl ServerSource {
    /// Starts syncing from `client`'s server in the background (one thread per kind).
    pub fn new(client: Client) -> ServerSource {
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        for kind in Kind::ALL {
            let (client, tx, stop) = (client.clone(), tx.clone(), Arc::clone(&stop));
            let spawned = std::thread::Builder::new()
                .name(format!("sync-{}", kind.short_name()))
                .spawn(move || sync_kind(&client, kind, &tx, &stop));
            if let Err(e) = spawned {
                tracing::error!(%kind, error = %e, "cannot start a sync thread");
            }
        }
        ServerSource {
            rx,
            state: BTreeMap::new(),
            listed: BTreeSet::new(),
            changed: false,
            pending: BTreeMap::new(),
            fingerprints: Fingerprints::default(),
            stop,
        }
    }

    /// `None` if nothing changed since the last call (or the server has not been listed
    /// completely yet, or is away); otherwise the upserts and deletes since the changes
    /// were last taken (the first time: every object). An object the server holds that
    /// does not load here makes the whole state an error (the agent keeps the last good
    /// state, and the changes wait) until it is fixed or deleted.
    pub fn poll(&mut self) -> Option<Result<Vec<Update>, LoadErrors>> {
        while let Ok(m) = self.rx.try_recv() {
            self.apply(m);
        }
        if !self.changed || !self.synced() {
            return None;
        }
        self.changed = false;
        let errors: Vec<_> = self
            .state
            .values()
            .filter_map(|e| match e {
                Entry::Invalid(errors) => Some(errors.0.iter().cloned()),
                Entry::Valid(_) => None,
            })
            .flatten()
            .collect();
        if !errors.is_empty() {
            return Some(Err(LoadErrors(errors)));
        }
        Some(Ok(std::mem::take(&mut self.pending)
            .into_values()
            .collect()))
    }

    /// Waits up to `timeout` for a message from the sync threads and takes it (the rest
    /// waiting is taken by [`ServerSource::poll`]).
    pub fn wait(&mut self, timeout: Duration) {
        match self.rx.recv_timeout(timeout) {
            Ok(m) => self.apply(m),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            // Every sync thread is gone (none could start): nothing will come, but the
            // agent's loop must not spin.
            Err(mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(timeout),
        }
    }

    /// True once every kind has been listed at least once.
    pub fn synced(&self) -> bool {
        self.listed.len() == Kind::ALL.len()
    }

    fn apply(&mut self, message: Message) {
        match message {
            Message::Replace {
                kind,
                items,
                invalid,
            } => {
                let mut gone: BTreeSet<ResourceKey> = self
                    .state
                    .keys()
                    .filter(|k| k.kind == kind)
                    .cloned()
                    .collect();
                for r in items {
                    gone.remove(&r.key());
                    self.put(r);
                }
                for (key, errors) in invalid {
                    gone.remove(&key);
                    self.put_invalid(key, errors);
                }
                for key in gone {
                    self.remove(key);
                }
                if self.listed.insert(kind) {
                    self.changed = true;
                }
            }
            Message::Put(r) => self.put(r),
            Message::Invalid(key, errors) => self.put_invalid(key, errors),
            Message::Remove(key) => self.remove(key),
        }
    }

    /// A version of an object; a change unless only its revision differs from the last.
    fn put(&mut self, r: Resource) {
        let key = r.key();
        let entry = Entry::Valid(self.fingerprints.of(&r));
        if self.state.get(&key) != Some(&entry) {
            self.state.insert(key.clone(), entry);
            self.pending.insert(key, Update::Upsert(r));
            self.changed = true;
        }
    }

    /// An object that does not load here.
    fn put_invalid(&mut self, key: ResourceKey, errors: LoadErrors) {
        let entry = Entry::Invalid(errors);
        if self.state.get(&key) != Some(&entry) {
            self.pending.remove(&key);
            self.state.insert(key, entry);
            self.changed = true;
        }
    }

    fn remove(&mut self, key: ResourceKey) {
        if self.state.remove(&key).is_some() {
            self.pending.insert(key.clone(), Update::Delete(key));
            self.changed = true;
        }
    }
}

impl Drop for ServerSource {
    fn drop(&mut self) {
        // Threads notice at their next event, bookmark or timeout (their sends fail too).
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn revision_of(r: &Resource) -> Option<u64> {
    r.meta().resource_version.as_deref()?.parse().ok()
}

/// One kind's loop: list, watch, reconnect, relist on expiry, until stopped or the
/// source is dropped.
fn sync_kind(client: &Client, kind: Kind, tx: &Sender<Message>, stop: &AtomicBool) {
    let mut revision: Option<u64> = None;
    let mut backoff = BACKOFF.0;
    let mut failing = false;
    let fail = |what: &str, e: &Error, failing: &mut bool, backoff: &mut Duration| {
        if *failing {
            tracing::debug!(%kind, error = %e, "{what} failed again");
        } else {
            tracing::warn!(%kind, error = %e, "{what} failed; keeping the last state and retrying");
            *failing = true;
        }
        std::thread::sleep(*backoff);
        *backoff = (*backoff * 2).min(BACKOFF.1);
    };
    while !stop.load(Ordering::Relaxed) {
        let from = match revision {
            Some(r) => r,
            None => match client.list(kind, None, None) {
                Ok(list) => {
                    let rev = list.revision;
                    let message = Message::Replace {
                        kind,
                        items: list.items,
                        invalid: list.invalid,
                    };
                    if tx.send(message).is_err() {
                        return;
                    }
                    revision = Some(rev);
                    rev
                }
                Err(e) => {
                    fail("list", &e, &mut failing, &mut backoff);
                    continue;
                }
            },
        };
        let mut watch = match client.watch(kind, from) {
            Ok(w) => w,
            Err(e) if e.is_expired() => {
                tracing::info!(%kind, from, "revision expired; listing again");
                revision = None;
                continue;
            }
            Err(e) => {
                fail("watch", &e, &mut failing, &mut backoff);
                continue;
            }
        };
        if failing {
            tracing::info!(%kind, from, "watching again");
            failing = false;
        }
        backoff = BACKOFF.0;
        let mut events = 0usize;
        while let Some(event) = watch.next() {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            events += 1;
            let message = match event {
                // Already applied (the contract says this does not happen; cheap to guard).
                Ok(WatchEvent::Added(r) | WatchEvent::Modified(r))
                    if revision_of(&r).is_some_and(|rv| rv <= from) =>
                {
                    None
                }
                Ok(WatchEvent::Added(r) | WatchEvent::Modified(r)) => Some(Message::Put(r)),
                Ok(WatchEvent::Deleted(r)) => Some(Message::Remove(r.key())),
                Ok(WatchEvent::Bookmark(_)) => None,
                Err(Error::Invalid {
                    key, deleted: true, ..
                }) => Some(Message::Remove(key)),
                Err(Error::Invalid { key, errors, .. }) => {
                    tracing::error!(%key, %errors, "an object from the server does not load");
                    Some(Message::Invalid(key, errors))
                }
                Err(e) if e.is_expired() => {
                    tracing::info!(%kind, "revision expired; listing again");
                    revision = None;
                    break;
                }
                Err(e) => {
                    tracing::debug!(%kind, error = %e, "watch ended; resuming");
                    break;
                }
            };
            if let Some(m) = message
                && tx.send(m).is_err()
            {
                return;
            }
            if revision.is_some() {
                revision = Some(watch.revision());
            }
        }
        if revision.is_some() {
            revision = Some(watch.revision());
        }
        if events == 0 {
            // A stream that ends at once: do not spin.
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(BACKOFF.1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_api::load_str;

    fn res(text: &str) -> Resource {
        load_str("t", text).expect("loads").remove(0).resource
    }

    fn gnp(name: &str, rv: &str, selector: &str) -> Resource {
        res(&format!(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: {name}, resourceVersion: '{rv}'}}\nspec: {{selector: \"{selector}\"}}\n"
        ))
    }

    /// A source fed by hand (no threads): the state machine on its own.
    fn source() -> (ServerSource, Sender<Message>) {
        let (tx, rx) = mpsc::channel();
        (
            ServerSource {
                rx,
                state: BTreeMap::new(),
                listed: BTreeSet::new(),
                changed: false,
                pending: BTreeMap::new(),
                fingerprints: Fingerprints::default(),
                stop: Arc::new(AtomicBool::new(false)),
            },
            tx,
        )
    }

    fn list_all_empty_but(tx: &Sender<Message>, kind: Kind, items: Vec<Resource>) {
        for k in Kind::ALL {
            let items = if k == kind { items.clone() } else { Vec::new() };
            tx.send(Message::Replace {
                kind: k,
                items,
                invalid: Vec::new(),
            })
            .expect("send");
        }
    }

    #[test]
    fn wait_wakes_up_for_a_change_instead_of_sleeping_the_interval() {
        let (mut s, tx) = source();
        list_all_empty_but(&tx, Kind::GlobalNetworkPolicy, vec![]);
        assert!(s.poll().expect("listed").expect("valid").is_empty());
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            tx.send(Message::Put(gnp("a", "1", "all()"))).expect("send");
            tx
        });
        let start = std::time::Instant::now();
        // An interval no test run reaches: returning at all means the message woke it.
        s.wait(Duration::from_secs(600));
        assert!(start.elapsed() < Duration::from_secs(300));
        assert_eq!(
            s.poll().expect("changed").expect("valid"),
            vec![Update::Upsert(gnp("a", "1", "all()"))]
        );
        let tx = sender.join().expect("sender");
        drop(tx);
        // With every sender gone, waiting still takes the interval (no busy loop).
        let start = std::time::Instant::now();
        s.wait(Duration::from_millis(30));
        assert!(start.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn nothing_before_every_kind_is_listed() {
        let (mut s, tx) = source();
        tx.send(Message::Replace {
            kind: Kind::GlobalNetworkPolicy,
            items: vec![gnp("a", "1", "all()")],
            invalid: Vec::new(),
        })
        .expect("send");
        assert!(s.poll().is_none());
        assert!(!s.synced());
        list_all_empty_but(&tx, Kind::GlobalNetworkPolicy, vec![gnp("a", "1", "all()")]);
        let got = s.poll().expect("a change").expect("valid");
        assert_eq!(got.len(), 1);
        assert!(s.synced());
        assert!(s.poll().is_none(), "nothing new");
    }

    #[test]
    fn events_change_the_state_and_revision_only_writes_do_not() {
        let (mut s, tx) = source();
        list_all_empty_but(&tx, Kind::GlobalNetworkPolicy, vec![gnp("a", "1", "all()")]);
        s.poll().expect("first state").expect("valid");
        tx.send(Message::Put(gnp("a", "2", "all()"))).expect("send");
        assert!(s.poll().is_none(), "only the revision changed");
        tx.send(Message::Put(gnp("b", "3", "has(x)")))
            .expect("send");
        tx.send(Message::Put(gnp("a", "4", "has(y)")))
            .expect("send");
        let got = s.poll().expect("changed").expect("valid");
        assert_eq!(
            got,
            vec![
                Update::Upsert(gnp("a", "4", "has(y)")),
                Update::Upsert(gnp("b", "3", "has(x)"))
            ],
            "only what changed, each key once with its last version"
        );
        tx.send(Message::Remove(gnp("b", "5", "").key()))
            .expect("send");
        assert_eq!(
            s.poll().expect("changed").expect("valid"),
            vec![Update::Delete(gnp("b", "5", "").key())]
        );
        // A relist identical to the state is no change; a different one is.
        list_all_empty_but(
            &tx,
            Kind::GlobalNetworkPolicy,
            vec![gnp("a", "6", "has(y)")],
        );
        assert!(s.poll().is_none());
        list_all_empty_but(&tx, Kind::GlobalNetworkPolicy, Vec::new());
        assert_eq!(
            s.poll().expect("changed").expect("valid"),
            vec![Update::Delete(gnp("a", "6", "").key())]
        );
    }

    #[test]
    fn an_object_that_does_not_load_holds_the_state_until_it_goes() {
        let (mut s, tx) = source();
        list_all_empty_but(&tx, Kind::GlobalNetworkPolicy, vec![gnp("a", "1", "all()")]);
        s.poll().expect("first").expect("valid");
        let bad = load_str(
            "server",
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: b}\nspec: {selector: 'x =='}\n",
        )
        .expect_err("invalid");
        let key = ResourceKey {
            kind: Kind::GlobalNetworkPolicy,
            namespace: None,
            name: "b".into(),
        };
        tx.send(Message::Invalid(key.clone(), bad)).expect("send");
        assert!(s.poll().expect("changed").is_err());
        // Changes made meanwhile wait, and come with the fix.
        tx.send(Message::Put(gnp("c", "2", "has(c)")))
            .expect("send");
        assert!(s.poll().expect("changed").is_err());
        tx.send(Message::Remove(key.clone())).expect("send");
        assert_eq!(
            s.poll().expect("changed").expect("valid"),
            vec![Update::Delete(key), Update::Upsert(gnp("c", "2", "has(c)"))]
        );
    }
}
