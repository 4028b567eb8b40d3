//! The shared test suite: every test here runs against every backend, through the
//! [`Store`] trait only. A backend's test file implements [`Harness`] and calls
//! `store_suite!(make_harness)`.

#![allow(dead_code)] // each test binary uses a part of the helpers

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use bulkhead_store::{Expect, KeyValue, Revision, Store, StoreError, WatchEvent, WatchStream};
use futures_util::StreamExt;

/// How long a test waits for one watch event before failing.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

/// A backend under test: opens handles onto one underlying store.
pub trait Harness: Send + 'static {
    /// The backend.
    type S: Store + Clone;
    /// Opens a new handle on the same data. For the embedded store, every earlier handle
    /// (and watch stream) must have been dropped first, as after a server restart.
    fn open(&mut self) -> impl Future<Output = Self::S> + Send;
}

/// Generates one `#[tokio::test]` per suite test. `$make` is an async expression giving
/// `Option<impl Harness>` (`None`: the backend is not available here, the test is skipped).
#[macro_export]
macro_rules! store_suite {
    ($make:expr) => {
        $crate::store_suite!(@tests $make;
            crud, conditional_writes, list_by_prefix, invalid_keys, watch_from_zero,
            watch_from_middle, watch_live, list_then_watch, watch_resume_after_reopen,
            compaction, concurrent_writers, cas_counter, large_values, many_keys,
            many_watchers, dropped_watch, watch_created_before_writes);
    };
    (@tests $make:expr; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                match $make.await {
                    Some(harness) => suite::$name(harness).await,
                    None => eprintln!("skipped: etcd not installed"),
                }
            }
        )*
    };
}

// ---------------------------------------------------------------- helpers

pub async fn next_event(stream: &mut WatchStream) -> WatchEvent {
    match tokio::time::timeout(EVENT_TIMEOUT, stream.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(e))) => panic!("watch failed: {e}"),
        Ok(None) => panic!("watch ended"),
        Err(_) => panic!("no watch event within {EVENT_TIMEOUT:?}"),
    }
}

pub async fn take(stream: &mut WatchStream, n: usize) -> Vec<WatchEvent> {
    let mut events = Vec::with_capacity(n);
    for _ in 0..n {
        events.push(next_event(stream).await);
    }
    events
}

/// Asserts that the stream delivers nothing (more) for a little while.
pub async fn assert_quiet(stream: &mut WatchStream) {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(300), stream.next()).await {
        panic!("unexpected watch item: {item:?}");
    }
}

/// A watch that must be refused as compacted, either by `watch` or as the first item.
pub async fn expect_compacted<S: Store>(store: &S, prefix: &str, from: Revision) -> Revision {
    match store.watch(prefix, from).await {
        Err(StoreError::Compacted { oldest }) => oldest,
        Err(e) => panic!("watch from {from}: expected Compacted, got {e}"),
        Ok(mut stream) => match tokio::time::timeout(EVENT_TIMEOUT, stream.next()).await {
            Ok(Some(Err(StoreError::Compacted { oldest }))) => {
                assert!(
                    stream.next().await.is_none(),
                    "the stream ends after an error"
                );
                oldest
            }
            other => panic!("watch from {from}: expected Compacted, got {other:?}"),
        },
    }
}

pub fn put_of(event: &WatchEvent) -> &KeyValue {
    match event {
        WatchEvent::Put(kv) => kv,
        other => panic!("expected a put, got {other:?}"),
    }
}

fn conflict_current(result: Result<impl std::fmt::Debug, StoreError>) -> Option<KeyValue> {
    match result {
        Err(StoreError::Conflict { current, .. }) => current.map(|kv| *kv),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

/// Strictly increasing revisions.
fn assert_increasing(events: &[WatchEvent]) {
    for pair in events.windows(2) {
        assert!(
            pair[0].revision() < pair[1].revision(),
            "out of order: {pair:?}"
        );
    }
}

// ---------------------------------------------------------------- tests

pub async fn crud<H: Harness>(mut h: H) {
    let s = h.open().await;
    assert_eq!(s.get("/a/x").await.unwrap(), None);
    let start = s.current_revision().await.unwrap();

    let r1 = s.put("/a/x", b"one".to_vec(), Expect::Any).await.unwrap();
    assert!(r1 > start);
    let kv = s.get("/a/x").await.unwrap().unwrap();
    assert_eq!(
        kv,
        KeyValue {
            key: "/a/x".into(),
            value: b"one".to_vec(),
            create_revision: r1,
            mod_revision: r1
        }
    );
    assert_eq!(s.current_revision().await.unwrap(), r1);

    let r2 = s.put("/a/x", b"two".to_vec(), Expect::Any).await.unwrap();
    assert!(r2 > r1);
    let kv = s.get("/a/x").await.unwrap().unwrap();
    assert_eq!(
        (kv.value.as_slice(), kv.create_revision, kv.mod_revision),
        (&b"two"[..], r1, r2)
    );

    // An empty value is a value.
    let r3 = s.put("/a/empty", Vec::new(), Expect::Any).await.unwrap();
    assert_eq!(
        s.get("/a/empty").await.unwrap().unwrap().value,
        Vec::<u8>::new()
    );

    let r4 = s.delete("/a/x", Expect::Any).await.unwrap().unwrap();
    assert!(r4 > r3);
    assert_eq!(s.get("/a/x").await.unwrap(), None);
    // Deleting what is not there writes nothing.
    assert_eq!(s.delete("/a/x", Expect::Any).await.unwrap(), None);
    assert_eq!(s.current_revision().await.unwrap(), r4);

    // Re-created: a new create_revision.
    let r5 = s.put("/a/x", b"three".to_vec(), Expect::Any).await.unwrap();
    let kv = s.get("/a/x").await.unwrap().unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision), (r5, r5));
}

pub async fn conditional_writes<H: Harness>(mut h: H) {
    let s = h.open().await;
    let r1 = s.put("/c/k", b"v1".to_vec(), Expect::Absent).await.unwrap();
    let before = s.current_revision().await.unwrap();

    // Create of an existing key: conflict, carrying the current value.
    let current = conflict_current(s.put("/c/k", b"x".to_vec(), Expect::Absent).await).unwrap();
    assert_eq!(
        (current.value.as_slice(), current.mod_revision),
        (&b"v1"[..], r1)
    );
    // Update of a stale version.
    let current = conflict_current(
        s.put("/c/k", b"x".to_vec(), Expect::ModRevision(r1 + 100))
            .await,
    );
    assert_eq!(current.unwrap().mod_revision, r1);
    // Update of a key that does not exist.
    assert_eq!(
        conflict_current(
            s.put("/c/none", b"x".to_vec(), Expect::ModRevision(r1))
                .await
        ),
        None
    );
    // Failed writes do not advance the revision or change anything.
    assert_eq!(s.current_revision().await.unwrap(), before);
    assert_eq!(s.get("/c/k").await.unwrap().unwrap().value, b"v1");
    assert_eq!(s.get("/c/none").await.unwrap(), None);

    // Update of the current version.
    let r2 = s
        .put("/c/k", b"v2".to_vec(), Expect::ModRevision(r1))
        .await
        .unwrap();
    assert!(r2 > r1);
    let kv = s.get("/c/k").await.unwrap().unwrap();
    assert_eq!(
        (kv.value.as_slice(), kv.create_revision, kv.mod_revision),
        (&b"v2"[..], r1, r2)
    );
    // The version just replaced is now stale.
    assert!(
        conflict_current(s.put("/c/k", b"x".to_vec(), Expect::ModRevision(r1)).await).is_some()
    );

    // ModRevision(0) means absent, as in etcd.
    let r3 = s
        .put("/c/zero", b"z".to_vec(), Expect::ModRevision(0))
        .await
        .unwrap();
    assert!(
        conflict_current(
            s.put("/c/zero", b"z".to_vec(), Expect::ModRevision(0))
                .await
        )
        .is_some()
    );

    // Conditional deletes.
    assert!(conflict_current(s.delete("/c/k", Expect::ModRevision(r1)).await).is_some());
    assert!(conflict_current(s.delete("/c/k", Expect::Absent).await).is_some());
    assert_eq!(s.delete("/c/none", Expect::Absent).await.unwrap(), None);
    assert_eq!(
        s.delete("/c/none", Expect::ModRevision(0)).await.unwrap(),
        None
    );
    assert_eq!(
        conflict_current(s.delete("/c/none", Expect::ModRevision(5)).await),
        None
    );
    let r4 = s
        .delete("/c/k", Expect::ModRevision(r2))
        .await
        .unwrap()
        .unwrap();
    assert!(r4 > r3);
    assert_eq!(s.get("/c/k").await.unwrap(), None);
    assert_eq!(s.current_revision().await.unwrap(), r4);
}

pub async fn list_by_prefix<H: Harness>(mut h: H) {
    let s = h.open().await;
    let (items, r0) = s.list("").await.unwrap();
    assert!(items.is_empty());
    assert_eq!(r0, s.current_revision().await.unwrap());
    for key in ["/b/1", "/a/2", "/ab/1", "/a/1", "/a/10", "/a", "/a/\u{e9}"] {
        s.put(key, key.as_bytes().to_vec(), Expect::Absent)
            .await
            .unwrap();
    }
    let last = s.put("/a/2", b"again".to_vec(), Expect::Any).await.unwrap();

    let keys = |items: &[KeyValue]| items.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>();
    let (items, rev) = s.list("/a/").await.unwrap();
    assert_eq!(keys(&items), ["/a/1", "/a/10", "/a/2", "/a/\u{e9}"]);
    assert_eq!(rev, last);
    assert_eq!(items[2].value, b"again");
    assert_eq!(items[2].mod_revision, last);
    let (items, _) = s.list("/a").await.unwrap();
    assert_eq!(
        keys(&items),
        ["/a", "/a/1", "/a/10", "/a/2", "/a/\u{e9}", "/ab/1"]
    );
    let (items, _) = s.list("").await.unwrap();
    assert_eq!(items.len(), 7);
    assert!(
        items.windows(2).all(|w| w[0].key < w[1].key),
        "sorted by key"
    );
    assert!(items.iter().all(|kv| kv.mod_revision <= rev));
    let (items, _) = s.list("/zz").await.unwrap();
    assert!(items.is_empty());
    let (items, _) = s.list("/a/1").await.unwrap();
    assert_eq!(keys(&items), ["/a/1", "/a/10"]);
}

pub async fn invalid_keys<H: Harness>(mut h: H) {
    let s = h.open().await;
    assert!(matches!(s.get("").await, Err(StoreError::InvalidKey(_))));
    assert!(matches!(
        s.put("", b"x".to_vec(), Expect::Any).await,
        Err(StoreError::InvalidKey(_))
    ));
    assert!(matches!(
        s.delete("", Expect::Any).await,
        Err(StoreError::InvalidKey(_))
    ));
}

/// Writes a known sequence under `/w/` (and noise under `/other/`); returns the events
/// expected under `/w/`.
async fn write_sequence<S: Store>(s: &S) -> Vec<WatchEvent> {
    let mut expected = Vec::new();
    let put = async |key: &str, value: &str| -> KeyValue {
        let rev = s
            .put(key, value.as_bytes().to_vec(), Expect::Any)
            .await
            .unwrap();
        let kv = s.get(key).await.unwrap().unwrap();
        assert_eq!(kv.mod_revision, rev, "get returns the write just made");
        kv
    };
    let a1 = put("/w/a", "a1").await;
    put("/other/x", "noise").await;
    let b1 = put("/w/b", "b1").await;
    let a2 = put("/w/a", "a2").await;
    let del = s.delete("/w/b", Expect::Any).await.unwrap().unwrap();
    put("/other/y", "noise").await;
    let c1 = put("/w/c", "c1").await;
    expected.push(WatchEvent::Put(a1));
    expected.push(WatchEvent::Put(b1.clone()));
    expected.push(WatchEvent::Put(a2));
    expected.push(WatchEvent::Delete {
        key: "/w/b".into(),
        revision: del,
        prev: Some(b1),
    });
    expected.push(WatchEvent::Put(c1));
    expected
}

pub async fn watch_from_zero<H: Harness>(mut h: H) {
    let s = h.open().await;
    let expected = write_sequence(&s).await;
    let mut stream = s.watch("/w/", 0).await.unwrap();
    assert_eq!(take(&mut stream, expected.len()).await, expected);
    assert_quiet(&mut stream).await;
    // And everything, from 0.
    let mut all = s.watch("", 0).await.unwrap();
    let events = take(&mut all, 7).await;
    assert_increasing(&events);
    assert_eq!(
        events.last().map(WatchEvent::revision),
        Some(s.current_revision().await.unwrap())
    );
    assert_quiet(&mut all).await;
}

pub async fn watch_from_middle<H: Harness>(mut h: H) {
    let s = h.open().await;
    let expected = write_sequence(&s).await;
    for skip in 0..expected.len() {
        let from = expected[skip].revision();
        let mut stream = s.watch("/w/", from).await.unwrap();
        let rest = &expected[skip + 1..];
        assert_eq!(take(&mut stream, rest.len()).await, rest, "from {from}");
        assert_quiet(&mut stream).await;
    }
    // From a revision between two events of the prefix (a write elsewhere).
    let between = expected[0].revision() + 1;
    let mut stream = s.watch("/w/", between).await.unwrap();
    assert_eq!(take(&mut stream, 4).await, &expected[1..]);
}

pub async fn watch_live<H: Harness>(mut h: H) {
    let s = h.open().await;
    s.put("/live/old", b"old".to_vec(), Expect::Any)
        .await
        .unwrap();
    let now = s.current_revision().await.unwrap();
    let mut stream = s.watch("/live/", now).await.unwrap();
    assert_quiet(&mut stream).await;

    let writer = s.clone();
    let task = tokio::spawn(async move {
        let mut revs = Vec::new();
        for i in 0..20 {
            writer
                .put("/elsewhere/k", vec![i], Expect::Any)
                .await
                .unwrap();
            revs.push(
                writer
                    .put(&format!("/live/k{i}"), vec![i], Expect::Any)
                    .await
                    .unwrap(),
            );
        }
        revs
    });
    let events = take(&mut stream, 20).await;
    let revs = task.await.unwrap();
    assert_eq!(
        events.iter().map(WatchEvent::revision).collect::<Vec<_>>(),
        revs
    );
    for (i, event) in events.iter().enumerate() {
        let kv = put_of(event);
        assert_eq!(
            (kv.key.as_str(), kv.value.as_slice()),
            (format!("/live/k{i}").as_str(), &[i as u8][..])
        );
    }
    assert_quiet(&mut stream).await;
}

/// The informer pattern: list at revision R, then watch from R; nothing lost, nothing twice,
/// with writes running all along.
pub async fn list_then_watch<H: Harness>(mut h: H) {
    let s = h.open().await;
    for i in 0..50 {
        s.put(&format!("/inf/{i:03}"), b"0".to_vec(), Expect::Any)
            .await
            .unwrap();
    }
    let writer = s.clone();
    let task = tokio::spawn(async move {
        let mut last = 0;
        for i in 0..100u32 {
            let key = format!("/inf/{:03}", i % 60);
            last = if i % 7 == 3 {
                writer
                    .delete(&key, Expect::Any)
                    .await
                    .unwrap()
                    .unwrap_or(last)
            } else {
                writer
                    .put(&key, i.to_string().into_bytes(), Expect::Any)
                    .await
                    .unwrap()
            };
        }
        last
    });
    tokio::time::sleep(Duration::from_millis(5)).await;
    let (items, at) = s.list("/inf/").await.unwrap();
    let mut state: BTreeMap<String, Vec<u8>> =
        items.into_iter().map(|kv| (kv.key, kv.value)).collect();
    let mut stream = s.watch("/inf/", at).await.unwrap();
    let last = task.await.unwrap();
    let mut seen = at;
    while seen < last {
        let event = next_event(&mut stream).await;
        assert!(event.revision() > seen);
        seen = event.revision();
        match event {
            WatchEvent::Put(kv) => {
                state.insert(kv.key, kv.value);
            }
            WatchEvent::Delete { key, .. } => {
                assert!(
                    state.remove(&key).is_some(),
                    "delete of a key not in the state: {key}"
                );
            }
        }
    }
    let (now, _) = s.list("/inf/").await.unwrap();
    let now: BTreeMap<String, Vec<u8>> = now.into_iter().map(|kv| (kv.key, kv.value)).collect();
    assert_eq!(state, now);
}

/// A client that loses its watch (server restart) resumes from the last revision it saw:
/// together, the two watches deliver every change once, in order.
pub async fn watch_resume_after_reopen<H: Harness>(mut h: H) {
    let s = h.open().await;
    let mut revs = Vec::new();
    for i in 0..10u8 {
        revs.push(
            s.put(&format!("/r/{i}"), vec![i], Expect::Any)
                .await
                .unwrap(),
        );
    }
    let mut stream = s.watch("/r/", 0).await.unwrap();
    let first = take(&mut stream, 4).await;
    let resume_at = first.last().unwrap().revision();
    drop(stream);
    drop(s);

    // Changes while the watcher is away, through another handle.
    let s = h.open().await;
    revs.push(s.delete("/r/2", Expect::Any).await.unwrap().unwrap());
    for i in 10..15u8 {
        revs.push(
            s.put(&format!("/r/{i}"), vec![i], Expect::Any)
                .await
                .unwrap(),
        );
    }
    drop(s);

    let s = h.open().await;
    let mut stream = s.watch("/r/", resume_at).await.unwrap();
    let second = take(&mut stream, revs.len() - first.len()).await;
    assert_quiet(&mut stream).await;
    let all: Vec<Revision> = first
        .iter()
        .chain(&second)
        .map(WatchEvent::revision)
        .collect();
    assert_eq!(all, revs, "every change once, in order");
    assert!(matches!(&second[6], WatchEvent::Delete { key, .. } if key == "/r/2"));

    // Changes after the resume arrive live.
    let live = s.put("/r/live", b"x".to_vec(), Expect::Any).await.unwrap();
    assert_eq!(next_event(&mut stream).await.revision(), live);
}

pub async fn compaction<H: Harness>(mut h: H) {
    let s = h.open().await;
    let mut revs = Vec::new();
    for i in 0..10u8 {
        revs.push(
            s.put(&format!("/cp/{}", i % 3), vec![i], Expect::Any)
                .await
                .unwrap(),
        );
    }
    let at = revs[5];
    s.compact(at).await.unwrap();
    // Watching from before the compaction point is refused.
    for from in [0, revs[0], revs[4], at - 1] {
        assert_eq!(expect_compacted(&s, "/cp/", from).await, at, "from {from}");
    }
    // From the compaction point on, history is complete.
    let mut stream = s.watch("/cp/", at).await.unwrap();
    let events = take(&mut stream, 4).await;
    assert_eq!(
        events.iter().map(WatchEvent::revision).collect::<Vec<_>>(),
        &revs[6..]
    );
    // Current values survive compaction.
    let (items, _) = s.list("/cp/").await.unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(s.get("/cp/0").await.unwrap().unwrap().value, vec![9]);
    // Compacting again at or below is a no-op; the future is refused.
    s.compact(revs[2]).await.unwrap();
    s.compact(at).await.unwrap();
    let now = s.current_revision().await.unwrap();
    assert!(matches!(
        s.compact(now + 10).await,
        Err(StoreError::FutureRevision { .. })
    ));
    assert_eq!(expect_compacted(&s, "/cp/", revs[1]).await, at);
    // Writes and watches carry on.
    let r = s
        .put("/cp/new", b"n".to_vec(), Expect::Absent)
        .await
        .unwrap();
    let mut stream = s.watch("/cp/", now).await.unwrap();
    assert_eq!(next_event(&mut stream).await.revision(), r);
}

/// Several tasks write at once: every acknowledged write gets its own revision, each task
/// sees its revisions increase, the final state and the watch history agree with the acks.
pub async fn concurrent_writers<H: Harness>(mut h: H) {
    let s = h.open().await;
    let start = s.current_revision().await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..4u8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            for i in 0..40u8 {
                let key = if i % 2 == 0 {
                    "/cc/hot".to_owned()
                } else {
                    format!("/cc/{t}/{i}")
                };
                let rev = s.put(&key, vec![t, i], Expect::Any).await.unwrap();
                // Each acknowledged write is visible at once (or already overwritten).
                let kv = s.get(&key).await.unwrap().unwrap();
                assert!(kv.mod_revision >= rev);
                acks.push((rev, key, vec![t, i]));
            }
            acks
        }));
    }
    let mut acks = Vec::new();
    for task in tasks {
        let mine = task.await.unwrap();
        assert!(
            mine.windows(2).all(|w| w[0].0 < w[1].0),
            "one writer's revisions increase"
        );
        acks.extend(mine);
    }
    acks.sort();
    let revs: BTreeSet<Revision> = acks.iter().map(|a| a.0).collect();
    assert_eq!(revs.len(), acks.len(), "no two writes share a revision");
    assert!(revs.iter().all(|&r| r > start));

    // The final value of each key is its last acknowledged write.
    let mut last: BTreeMap<&str, (Revision, &[u8])> = BTreeMap::new();
    for (rev, key, value) in &acks {
        last.insert(key, (*rev, value));
    }
    for (key, (rev, value)) in &last {
        let kv = s.get(key).await.unwrap().unwrap();
        assert_eq!(
            (kv.mod_revision, kv.value.as_slice()),
            (*rev, *value),
            "{key}"
        );
    }
    // The history holds exactly the acknowledged writes, in revision order.
    let mut stream = s.watch("/cc/", start).await.unwrap();
    let events = take(&mut stream, acks.len()).await;
    let seen: Vec<(Revision, String, Vec<u8>)> = events
        .iter()
        .map(|e| {
            let kv = put_of(e);
            (kv.mod_revision, kv.key.clone(), kv.value.clone())
        })
        .collect();
    assert_eq!(seen, acks);
    assert_quiet(&mut stream).await;
}

/// Read-modify-write with compare-and-swap from several tasks: no increment is lost.
pub async fn cas_counter<H: Harness>(mut h: H) {
    let s = h.open().await;
    s.put("/counter", b"0".to_vec(), Expect::Absent)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0;
            for _ in 0..15 {
                loop {
                    let kv = s.get("/counter").await.unwrap().unwrap();
                    let n: u64 = std::str::from_utf8(&kv.value).unwrap().parse().unwrap();
                    let next = (n + 1).to_string().into_bytes();
                    match s
                        .put("/counter", next, Expect::ModRevision(kv.mod_revision))
                        .await
                    {
                        Ok(_) => break,
                        Err(StoreError::Conflict { current, .. }) => {
                            assert!(current.unwrap().mod_revision > kv.mod_revision);
                            conflicts += 1;
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            conflicts
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(s.get("/counter").await.unwrap().unwrap().value, b"60");
}

pub async fn large_values<H: Harness>(mut h: H) {
    let s = h.open().await;
    // 1 MiB: under etcd's default request limit (1.5 MiB).
    let big: Vec<u8> = (0..1usize << 20).map(|i| (i * 7 % 251) as u8).collect();
    let from = s.current_revision().await.unwrap();
    let r1 = s.put("/big/1", big.clone(), Expect::Absent).await.unwrap();
    let r2 = s.put("/big/2", big.clone(), Expect::Absent).await.unwrap();
    assert_eq!(s.get("/big/1").await.unwrap().unwrap().value, big);
    let (items, _) = s.list("/big/").await.unwrap();
    assert_eq!(items.len(), 2);
    assert!(items.iter().all(|kv| kv.value == big));
    let mut stream = s.watch("/big/", from).await.unwrap();
    let events = take(&mut stream, 2).await;
    assert_eq!(
        events.iter().map(WatchEvent::revision).collect::<Vec<_>>(),
        [r1, r2]
    );
    assert!(events.iter().all(|e| put_of(e).value == big));
    let r3 = s
        .delete("/big/1", Expect::ModRevision(r1))
        .await
        .unwrap()
        .unwrap();
    match next_event(&mut stream).await {
        WatchEvent::Delete { revision, prev, .. } => {
            assert_eq!(revision, r3);
            assert_eq!(prev.unwrap().value, big);
        }
        other => panic!("{other:?}"),
    }
}

pub async fn many_keys<H: Harness>(mut h: H) {
    let s = h.open().await;
    const N: usize = 1200;
    let mut tasks = Vec::new();
    for t in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in (t..N).step_by(8) {
                let key = format!("/many/{}/{i:05}", i % 3);
                s.put(&key, i.to_string().into_bytes(), Expect::Absent)
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let (items, rev) = s.list("/many/").await.unwrap();
    assert_eq!(items.len(), N);
    assert!(items.windows(2).all(|w| w[0].key < w[1].key), "sorted");
    assert!(items.iter().all(|kv| kv.mod_revision <= rev));
    for kv in &items {
        let i: usize = std::str::from_utf8(&kv.value).unwrap().parse().unwrap();
        assert_eq!(kv.key, format!("/many/{}/{i:05}", i % 3));
    }
    let (one, _) = s.list("/many/1/").await.unwrap();
    assert_eq!(one.len(), N / 3);
    let mut stream = s.watch("/many/2/", 0).await.unwrap();
    let events = take(&mut stream, N / 3).await;
    assert_increasing(&events);
    assert_quiet(&mut stream).await;
}

/// Many watchers on one prefix all get the same complete sequence.
pub async fn many_watchers<H: Harness>(mut h: H) {
    let s = h.open().await;
    let from = s.current_revision().await.unwrap();
    let mut streams = Vec::new();
    for _ in 0..16 {
        streams.push(s.watch("/mw/", from).await.unwrap());
    }
    let mut revs = Vec::new();
    for i in 0..30u8 {
        revs.push(
            s.put(&format!("/mw/{}", i % 5), vec![i], Expect::Any)
                .await
                .unwrap(),
        );
    }
    for stream in &mut streams {
        let got: Vec<Revision> = take(stream, revs.len())
            .await
            .iter()
            .map(WatchEvent::revision)
            .collect();
        assert_eq!(got, revs);
    }
}

/// Dropping a watch cancels it and disturbs nothing else.
pub async fn dropped_watch<H: Harness>(mut h: H) {
    let s = h.open().await;
    let mut keep = s.watch("/dw/", 0).await.unwrap();
    for _ in 0..20 {
        let stream = s.watch("/dw/", 0).await.unwrap();
        drop(stream);
    }
    let r = s.put("/dw/a", b"a".to_vec(), Expect::Any).await.unwrap();
    let mut dropped_later = s.watch("/dw/", 0).await.unwrap();
    assert_eq!(next_event(&mut dropped_later).await.revision(), r);
    drop(dropped_later);
    let r2 = s.put("/dw/b", b"b".to_vec(), Expect::Any).await.unwrap();
    assert_eq!(
        take(&mut keep, 2)
            .await
            .iter()
            .map(WatchEvent::revision)
            .collect::<Vec<_>>(),
        [r, r2]
    );
}

/// A watch created, then not polled while writes happen: those writes are both in the
/// history and (embedded) in the live buffer; each must come exactly once.
pub async fn watch_created_before_writes<H: Harness>(mut h: H) {
    let s = h.open().await;
    let from = s.current_revision().await.unwrap();
    let mut stream = s.watch("/wb/", from).await.unwrap();
    let mut revs = Vec::new();
    for i in 0..10u8 {
        revs.push(s.put("/wb/k", vec![i], Expect::Any).await.unwrap());
    }
    let got: Vec<Revision> = take(&mut stream, 10)
        .await
        .iter()
        .map(WatchEvent::revision)
        .collect();
    assert_eq!(got, revs);
    assert_quiet(&mut stream).await;
    let r = s.delete("/wb/k", Expect::Any).await.unwrap().unwrap();
    assert_eq!(next_event(&mut stream).await.revision(), r);
    assert_quiet(&mut stream).await;
}
