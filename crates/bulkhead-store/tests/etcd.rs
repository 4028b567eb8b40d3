//! The shared suite against a real etcd, and the etcd store's own tests. Each test starts
//! its own etcd (`/usr/bin/etcd`, Debian package `etcd-server`) on free loopback ports with a
//! temporary data directory, killed by PID when the test ends (also on failure). Without the
//! binary the tests print "skipped: etcd not installed" and pass.

mod suite;

use std::time::Duration;

use bulkhead_store::testing::EtcdServer;
use bulkhead_store::{EtcdOptions, EtcdStore, Expect, Store, StoreError, WatchEvent};
use futures_util::StreamExt;
use suite::{Harness, assert_quiet, next_event, take};

struct Etcd {
    server: EtcdServer,
    namespace: String,
}

impl Harness for Etcd {
    type S = EtcdStore;

    async fn open(&mut self) -> EtcdStore {
        EtcdStore::connect(self.server.options(&self.namespace))
            .await
            .unwrap()
    }
}

async fn server() -> Option<EtcdServer> {
    match EtcdServer::start().await {
        Ok(server) => server,
        Err(e) => panic!("etcd is installed but did not start: {e}"),
    }
}

/// The shared suite runs inside a namespace, as a shared etcd would be used.
async fn etcd() -> Option<Etcd> {
    Some(Etcd {
        server: server().await?,
        namespace: "/bulkhead".into(),
    })
}

store_suite!(etcd());

macro_rules! etcd_or_skip {
    () => {
        match server().await {
            Some(server) => server,
            None => {
                eprintln!("skipped: etcd not installed");
                return;
            }
        }
    };
}

/// "Several servers on one etcd serve the same state": two stores with their own
/// connections, as two Bulkhead servers would have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_share_state() {
    let server = etcd_or_skip!();
    let a = EtcdStore::connect(server.options("/bh")).await.unwrap();
    let b = EtcdStore::connect(server.options("/bh")).await.unwrap();

    let mut watch_b = b
        .watch("/shared/", b.current_revision().await.unwrap())
        .await
        .unwrap();
    let r1 = a
        .put("/shared/x", b"from a".to_vec(), Expect::Absent)
        .await
        .unwrap();
    // Visible through the other server at once (reads are linearizable).
    let kv = b.get("/shared/x").await.unwrap().unwrap();
    assert_eq!((kv.value.as_slice(), kv.mod_revision), (&b"from a"[..], r1));
    assert_eq!(next_event(&mut watch_b).await.revision(), r1);

    // Both read version r1 and both update it: exactly one wins.
    let ra = a
        .put("/shared/x", b"a2".to_vec(), Expect::ModRevision(r1))
        .await
        .unwrap();
    match b
        .put("/shared/x", b"b2".to_vec(), Expect::ModRevision(r1))
        .await
    {
        Err(StoreError::Conflict {
            current: Some(current),
            ..
        }) => {
            assert_eq!(
                (current.value.as_slice(), current.mod_revision),
                (&b"a2"[..], ra)
            );
        }
        other => panic!("{other:?}"),
    }
    let rb = b
        .delete("/shared/x", Expect::ModRevision(ra))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.get("/shared/x").await.unwrap(), None);
    assert_eq!(
        a.current_revision().await.unwrap(),
        b.current_revision().await.unwrap()
    );
    match next_event(&mut watch_b).await {
        WatchEvent::Put(kv) => assert_eq!(kv.mod_revision, ra),
        other => panic!("{other:?}"),
    }
    match next_event(&mut watch_b).await {
        WatchEvent::Delete { revision, prev, .. } => {
            assert_eq!(revision, rb);
            assert_eq!(prev.unwrap().value, b"a2");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(a.list("/").await.unwrap(), b.list("/").await.unwrap());
}

/// Namespaces keep stores apart on one etcd; the empty namespace sees raw etcd keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_are_isolated() {
    let server = etcd_or_skip!();
    let one = EtcdStore::connect(server.options("/one")).await.unwrap();
    let two = EtcdStore::connect(server.options("/two")).await.unwrap();
    let root = EtcdStore::connect(server.options("")).await.unwrap();
    let mut watch_root = root.watch("", 0).await.unwrap();

    let r1 = one.put("/k", b"1".to_vec(), Expect::Absent).await.unwrap();
    let r2 = two.put("/k", b"2".to_vec(), Expect::Absent).await.unwrap();
    assert_eq!(one.get("/k").await.unwrap().unwrap().value, b"1");
    assert_eq!(two.get("/k").await.unwrap().unwrap().value, b"2");
    let (items, _) = one.list("").await.unwrap();
    assert_eq!(
        items.iter().map(|kv| kv.key.as_str()).collect::<Vec<_>>(),
        ["/k"]
    );
    let (items, _) = root.list("").await.unwrap();
    assert_eq!(
        items.iter().map(|kv| kv.key.as_str()).collect::<Vec<_>>(),
        ["/one/k", "/two/k"]
    );
    let events = take(&mut watch_root, 2).await;
    assert_eq!(
        events
            .iter()
            .map(|e| (e.key(), e.revision()))
            .collect::<Vec<_>>(),
        [("/one/k", r1), ("/two/k", r2)]
    );

    let mut watch_one = one.watch("", 0).await.unwrap();
    assert_eq!(next_event(&mut watch_one).await.key(), "/k");
    assert_quiet(&mut watch_one).await;
}

/// etcd dies under an open watch: the stream fails; after etcd is back the client resumes
/// from the last revision it saw and gets every change once. Acknowledged writes survive
/// the kill -9 of etcd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resumes_after_etcd_restart() {
    let mut server = etcd_or_skip!();
    let store = EtcdStore::connect(server.options("/bh")).await.unwrap();
    let mut revs = Vec::new();
    for i in 0..5u8 {
        revs.push(
            store
                .put(&format!("/r/{i}"), vec![i], Expect::Any)
                .await
                .unwrap(),
        );
    }
    let mut stream = store.watch("/r/", 0).await.unwrap();
    let first = take(&mut stream, 5).await;
    let resume_at = first.last().unwrap().revision();

    let pid = server.pid();
    server.kill();
    match tokio::time::timeout(Duration::from_secs(30), stream.next()).await {
        Ok(Some(Err(e))) => eprintln!("watch failed as expected after killing etcd {pid:?}: {e}"),
        other => panic!("expected a watch error, got {other:?}"),
    }
    assert!(
        stream.next().await.is_none(),
        "the stream ends after an error"
    );

    server.restart().await.unwrap();
    // The same handle reconnects by itself.
    for i in 5..10u8 {
        revs.push(
            store
                .put(&format!("/r/{i}"), vec![i], Expect::Any)
                .await
                .unwrap(),
        );
    }
    let mut stream = store.watch("/r/", resume_at).await.unwrap();
    let second = take(&mut stream, 5).await;
    let all: Vec<u64> = first
        .iter()
        .chain(&second)
        .map(WatchEvent::revision)
        .collect();
    assert_eq!(all, revs);
    assert_eq!(store.list("/r/").await.unwrap().0.len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_to_nothing_fails_fast() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options = EtcdOptions {
        endpoints: vec![format!("http://127.0.0.1:{port}")],
        connect_timeout: Duration::from_millis(500),
        ..EtcdOptions::default()
    };
    let started = std::time::Instant::now();
    assert!(matches!(
        EtcdStore::connect(options).await,
        Err(StoreError::Etcd(_))
    ));
    assert!(started.elapsed() < Duration::from_secs(5));
}
