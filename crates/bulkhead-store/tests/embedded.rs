//! The shared suite and the embedded store's own tests.

mod suite;

use std::time::Duration;

use bulkhead_store::{EmbeddedOptions, EmbeddedStore, Expect, Store, StoreError, WatchEvent};
use futures_util::StreamExt;
use suite::{Harness, expect_compacted, next_event, take};

struct Embedded {
    dir: tempfile::TempDir,
    options: EmbeddedOptions,
}

impl Embedded {
    fn new(options: EmbeddedOptions) -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            options,
        }
    }
}

impl Harness for Embedded {
    type S = EmbeddedStore;

    async fn open(&mut self) -> EmbeddedStore {
        // A handle dropped on another thread (a spawn_blocking task that held it) may
        // still be closing the file: retry "already open" briefly.
        for _ in 0..100 {
            match EmbeddedStore::open(self.dir.path(), self.options.clone()) {
                Ok(store) => return store,
                Err(StoreError::Embedded(redb::Error::DatabaseAlreadyOpen)) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => panic!("open: {e}"),
            }
        }
        panic!("store still open elsewhere");
    }
}

async fn embedded() -> Option<Embedded> {
    Some(Embedded::new(EmbeddedOptions::default()))
}

store_suite!(embedded());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_discards_old_history() {
    let mut h = Embedded::new(EmbeddedOptions {
        retention: 5,
        ..EmbeddedOptions::default()
    });
    let s = h.open().await;
    for i in 0..20u8 {
        s.put(&format!("/k/{}", i % 4), vec![i], Expect::Any)
            .await
            .unwrap();
    }
    // Revision 20 written, 5 kept: events 16..=20, watchable from 15.
    assert_eq!(expect_compacted(&s, "/k/", 0).await, 15);
    assert_eq!(expect_compacted(&s, "/k/", 14).await, 15);
    let mut stream = s.watch("/k/", 15).await.unwrap();
    let revs: Vec<u64> = take(&mut stream, 5)
        .await
        .iter()
        .map(WatchEvent::revision)
        .collect();
    assert_eq!(revs, [16, 17, 18, 19, 20]);
    // The state is all there.
    assert_eq!(s.list("/k/").await.unwrap().0.len(), 4);
    drop((stream, s));
    let report = EmbeddedStore::check(h.dir.path()).unwrap();
    assert_eq!(
        (
            report.revision,
            report.compacted,
            report.keys,
            report.history
        ),
        (20, 15, 4, 5)
    );
}

/// A watcher that does not read while many writes happen overflows its live buffer; it
/// then reads the history and still gets everything, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_watcher_catches_up_from_history() {
    let mut h = Embedded::new(EmbeddedOptions {
        watch_buffer: 4,
        ..EmbeddedOptions::default()
    });
    let s = h.open().await;
    let mut stream = s.watch("/slow/", 0).await.unwrap();
    // Read one event so the stream is in live mode before the burst.
    let first = s
        .put("/slow/first", b"f".to_vec(), Expect::Any)
        .await
        .unwrap();
    assert_eq!(next_event(&mut stream).await.revision(), first);
    let mut revs = Vec::new();
    for i in 0..300u32 {
        s.put("/other/noise", b"n".to_vec(), Expect::Any)
            .await
            .unwrap();
        revs.push(
            s.put(&format!("/slow/{i}"), i.to_le_bytes().to_vec(), Expect::Any)
                .await
                .unwrap(),
        );
    }
    let got: Vec<u64> = take(&mut stream, revs.len())
        .await
        .iter()
        .map(WatchEvent::revision)
        .collect();
    assert_eq!(got, revs);
    // And it is live again.
    let last = s
        .put("/slow/last", b"l".to_vec(), Expect::Any)
        .await
        .unwrap();
    assert_eq!(next_event(&mut stream).await.revision(), last);
}

/// A watcher that falls behind by more than the retention gets Compacted, not a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_watcher_past_retention_gets_compacted() {
    let mut h = Embedded::new(EmbeddedOptions {
        watch_buffer: 2,
        retention: 10,
        ..EmbeddedOptions::default()
    });
    let s = h.open().await;
    let mut stream = s.watch("/p/", 0).await.unwrap();
    for i in 0..50u8 {
        s.put("/p/k", vec![i], Expect::Any).await.unwrap();
    }
    // The first events may come from the live buffer; then the history is gone.
    let mut delivered = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap()
        {
            Some(Ok(event)) => delivered.push(event.revision()),
            Some(Err(StoreError::Compacted { oldest })) => {
                assert_eq!(oldest, 40);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(
        delivered
            .iter()
            .enumerate()
            .all(|(i, &r)| r == i as u64 + 1),
        "no gap: {delivered:?}"
    );
    assert!(stream.next().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_and_revision_survive_reopen() {
    let mut h = Embedded::new(EmbeddedOptions::default());
    let s = h.open().await;
    s.put("/a", b"1".to_vec(), Expect::Any).await.unwrap();
    let r = s.put("/b", b"2".to_vec(), Expect::Any).await.unwrap();
    s.delete("/a", Expect::Any).await.unwrap();
    s.compact(r).await.unwrap();
    drop(s);
    let s = h.open().await;
    assert_eq!(s.current_revision().await.unwrap(), 3);
    assert_eq!(s.get("/a").await.unwrap(), None);
    assert_eq!(s.get("/b").await.unwrap().unwrap().mod_revision, r);
    // Revisions continue, never reused; the compaction point is kept.
    assert_eq!(s.put("/c", b"3".to_vec(), Expect::Absent).await.unwrap(), 4);
    assert_eq!(expect_compacted(&s, "", 1).await, r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_ends_when_store_closes() {
    let mut h = Embedded::new(EmbeddedOptions::default());
    let s = h.open().await;
    let mut stream = s.watch("", 0).await.unwrap();
    let r = s.put("/x", b"x".to_vec(), Expect::Any).await.unwrap();
    assert_eq!(next_event(&mut stream).await.revision(), r);
    drop(s);
    // The stream does not keep the database open.
    match tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .unwrap()
    {
        Some(Err(StoreError::Closed)) => {}
        other => panic!("{other:?}"),
    }
    assert!(stream.next().await.is_none());
    let s = h.open().await;
    assert_eq!(s.current_revision().await.unwrap(), r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_open_is_refused() {
    let mut h = Embedded::new(EmbeddedOptions::default());
    let _s = h.open().await;
    match EmbeddedStore::open(h.dir.path(), EmbeddedOptions::default()) {
        Err(StoreError::Embedded(redb::Error::DatabaseAlreadyOpen)) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn foreign_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(EmbeddedStore::FILE_NAME),
        b"not a database at all",
    )
    .unwrap();
    assert!(EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).is_err());
}
