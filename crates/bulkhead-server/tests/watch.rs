//! Watch streams: order, resume without gaps or repeats, bookmarks, expiry, views.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bulkhead_api::Kind;
use bulkhead_server::StoreConfig;
use bulkhead_server::client::{Client, WatchEvents};
use bulkhead_store::EmbeddedOptions;
use common::{TestServer, collection, expect, gnp, object, rv};
use serde_json::{Value, json};

const GNPS: &str = "/apis/projectcalico.org/v3/globalnetworkpolicies";

fn open(c: &Client, query: &str) -> WatchEvents {
    c.watch(
        &format!("{GNPS}?watch=1&{query}"),
        Some(Duration::from_secs(10)),
    )
    .expect("watch")
}

fn next(events: &mut WatchEvents) -> Value {
    events.next().expect("an event").expect("a JSON event")
}

/// The next event that is not a bookmark.
fn next_change(events: &mut WatchEvents) -> Value {
    loop {
        let e = next(events);
        if e["type"] != "BOOKMARK" {
            return e;
        }
    }
}

fn summary(e: &Value) -> (String, String, u64) {
    (
        e["type"].as_str().unwrap_or("").to_string(),
        e["object"]["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        rv(&e["object"]),
    )
}

#[test]
fn a_watch_from_a_revision_delivers_every_later_change_in_order() {
    let t = TestServer::start();
    let c = t.admin();
    let a = expect(
        c.send_json("POST", GNPS, &gnp("a", "default"))
            .expect("post"),
        201,
    );
    let b = expect(
        c.send_json("POST", GNPS, &gnp("b", "default"))
            .expect("post"),
        201,
    );
    let mut events = open(&c, &format!("resourceVersion={}", rv(&a)));
    assert_eq!(
        summary(&next(&mut events)),
        ("ADDED".into(), "b".into(), rv(&b))
    );
    let mut changed = gnp("b", "default");
    changed["metadata"]["labels"] = json!({"x": "y"});
    let m = expect(
        c.send_json("PUT", &object(Kind::GlobalNetworkPolicy, "b"), &changed)
            .expect("put"),
        200,
    );
    // A write to another kind is not shown.
    expect(
        c.send_json(
            "POST",
            &collection(Kind::Tier),
            &common::sample(Kind::Tier, "t"),
        )
        .expect("post"),
        201,
    );
    let d = expect(
        c.delete(&object(Kind::GlobalNetworkPolicy, "a"))
            .expect("delete"),
        200,
    );
    let e = next(&mut events);
    assert_eq!(summary(&e), ("MODIFIED".into(), "b".into(), rv(&m)));
    assert_eq!(e["object"], m);
    let e = next(&mut events);
    assert_eq!(summary(&e), ("DELETED".into(), "a".into(), rv(&d)));
    assert_eq!(
        e["object"]["spec"], a["spec"],
        "DELETED carries the last state"
    );
}

#[test]
fn a_watch_without_a_revision_starts_with_the_current_objects() {
    let t = TestServer::start();
    let c = t.admin();
    for name in ["x", "y"] {
        expect(
            c.send_json("POST", GNPS, &gnp(name, "default"))
                .expect("post"),
            201,
        );
    }
    let mut events = c
        .watch(&format!("{GNPS}?watch=true"), Some(Duration::from_secs(10)))
        .expect("watch");
    let first: BTreeSet<_> = (0..2).map(|_| summary(&next(&mut events)).1).collect();
    assert_eq!(first, BTreeSet::from(["x".to_string(), "y".to_string()]));
    let z = expect(
        c.send_json("POST", GNPS, &gnp("z", "default"))
            .expect("post"),
        201,
    );
    assert_eq!(
        summary(&next(&mut events)),
        ("ADDED".into(), "z".into(), rv(&z))
    );
}

#[test]
fn bookmarks_move_with_writes_elsewhere_and_resume_exactly() {
    let t = TestServer::start();
    let c = t.admin();
    let start = rv(&expect(c.get(GNPS).expect("list"), 200));
    let mut events = open(
        &c,
        &format!("resourceVersion={start}&allowWatchBookmarks=true"),
    );
    // Only other kinds change: the bookmark still advances to their revision.
    let tier = expect(
        c.send_json(
            "POST",
            &collection(Kind::Tier),
            &common::sample(Kind::Tier, "t"),
        )
        .expect("post"),
        201,
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let bookmark = loop {
        let e = next(&mut events);
        assert_eq!(e["type"], "BOOKMARK", "{e}");
        assert_eq!(e["object"]["kind"], "GlobalNetworkPolicy");
        if rv(&e["object"]) == rv(&tier) {
            break rv(&e["object"]);
        }
        assert!(
            Instant::now() < deadline,
            "bookmark never reached {}",
            rv(&tier)
        );
    };
    drop(events);
    let g = expect(
        c.send_json("POST", GNPS, &gnp("after", "default"))
            .expect("post"),
        201,
    );
    let mut resumed = open(&c, &format!("resourceVersion={bookmark}"));
    assert_eq!(
        summary(&next_change(&mut resumed)),
        ("ADDED".into(), "after".into(), rv(&g))
    );
}

#[test]
fn reconnecting_with_the_last_version_misses_nothing_and_repeats_nothing_under_concurrent_writes() {
    let t = TestServer::start();
    let c = t.admin();
    let start = rv(&expect(c.get(GNPS).expect("list"), 200));
    let writers_done = AtomicBool::new(false);
    let (acked, seen, connections) = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let mut last = start;
            let mut seen = Vec::new();
            let mut connections = 0;
            let mut end = None;
            loop {
                connections += 1;
                let mut events = open(
                    &c,
                    &format!("resourceVersion={last}&allowWatchBookmarks=true"),
                );
                // Hang up after a few events, mid-stream, as a flaky network would.
                for _ in 0..(3 + connections % 5) {
                    let e = next(&mut events);
                    last = rv(&e["object"]);
                    if e["type"] != "BOOKMARK" {
                        seen.push(last);
                    }
                    if end.is_none() && writers_done.load(Ordering::SeqCst) {
                        end = Some(rv(&expect(c.get(GNPS).expect("list"), 200)));
                    }
                    if end.is_some_and(|end| last >= end) {
                        return (seen, connections);
                    }
                }
            }
        });
        let writers: Vec<_> = (0..3)
            .map(|w| {
                let c = c.clone();
                s.spawn(move || {
                    let mut acked = Vec::new();
                    for i in 0..40 {
                        let name = format!("w{w}-{}", i % 7);
                        let path = object(Kind::GlobalNetworkPolicy, &name);
                        let r = if i % 5 == 4 {
                            c.delete(&path).expect("delete")
                        } else {
                            let mut doc = gnp(&name, "default");
                            doc["metadata"]["labels"] = json!({"i": i.to_string()});
                            c.send_json("PUT", &path, &doc).expect("put")
                        };
                        if r.status < 300 {
                            acked.push(rv(&r.json().expect("json")));
                        } else {
                            assert_eq!(r.status, 404, "{}", r.text());
                        }
                    }
                    acked
                })
            })
            .collect();
        let mut acked: Vec<u64> = writers
            .into_iter()
            .flat_map(|w| w.join().expect("writer"))
            .collect();
        writers_done.store(true, Ordering::SeqCst);
        let (seen, connections) = watcher.join().expect("watcher");
        acked.sort_unstable();
        (acked, seen, connections)
    });
    assert!(
        connections > 5,
        "the watcher reconnected only {connections} times"
    );
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "revisions repeat or go back: {seen:?}"
    );
    assert_eq!(
        seen, acked,
        "every acknowledged write exactly once, over {connections} connections"
    );
}

#[test]
fn a_revision_older_than_the_history_is_expired() {
    let t = TestServer::start_with(|config| {
        config.store = StoreConfig::Embedded(EmbeddedOptions {
            retention: 5,
            ..EmbeddedOptions::default()
        });
    });
    let c = t.admin();
    for i in 0..12 {
        expect(
            c.send_json("POST", GNPS, &gnp(&format!("p{i}"), "default"))
                .expect("post"),
            201,
        );
    }
    let mut events = open(&c, "resourceVersion=1");
    let e = next(&mut events);
    assert_eq!(e["type"], "ERROR");
    assert_eq!(e["object"]["code"], 410);
    assert_eq!(e["object"]["reason"], "Expired");
    assert!(events.next().is_none(), "the stream ends after the error");
    // Relist, then watch from the list: that works.
    let list = expect(c.get(GNPS).expect("list"), 200);
    let mut events = open(&c, &format!("resourceVersion={}", rv(&list)));
    let g = expect(
        c.send_json("POST", GNPS, &gnp("fresh", "default"))
            .expect("post"),
        201,
    );
    assert_eq!(summary(&next(&mut events)).2, rv(&g));
}

#[test]
fn a_selector_watch_shows_objects_entering_and_leaving_its_view() {
    let t = TestServer::start();
    let c = t.admin();
    let labelled = |name: &str, app: &str| {
        let mut doc = gnp(name, "default");
        doc["metadata"]["labels"] = json!({"app": app});
        doc
    };
    let put = |doc: &Value| {
        let name = doc["metadata"]["name"].as_str().expect("name").to_string();
        let r = c
            .send_json("PUT", &object(Kind::GlobalNetworkPolicy, &name), doc)
            .expect("put");
        assert!(r.status < 300, "{}", r.text());
        rv(&r.json().expect("json"))
    };
    put(&labelled("web", "web"));
    put(&labelled("db", "db"));
    let mut events = c
        .watch(
            &format!("{GNPS}?watch=1&labelSelector=app%20%3D%3D%20%27web%27"),
            Some(Duration::from_secs(10)),
        )
        .expect("watch");
    assert_eq!(
        summary(&next(&mut events)).1,
        "web",
        "initial state: only the matching object"
    );
    let out = put(&labelled("web", "other"));
    assert_eq!(
        summary(&next(&mut events)),
        ("DELETED".into(), "web".into(), out)
    );
    put(&labelled("db", "db2")); // never in view: no event
    let back = put(&labelled("db", "web"));
    assert_eq!(
        summary(&next(&mut events)),
        ("ADDED".into(), "db".into(), back)
    );
    let gone = rv(&expect(
        c.delete(&object(Kind::GlobalNetworkPolicy, "db"))
            .expect("delete"),
        200,
    ));
    assert_eq!(
        summary(&next(&mut events)),
        ("DELETED".into(), "db".into(), gone)
    );
}

#[test]
fn watches_end_at_their_timeout_and_are_counted_while_open() {
    let t = TestServer::start();
    let c = t.admin();
    let mut events = open(&c, "timeoutSeconds=1");
    let metrics = c.get("/metrics").expect("metrics").text();
    assert!(metrics.contains("bulkhead_server_watchers 1"), "{metrics}");
    let started = Instant::now();
    assert!(events.next().is_none());
    assert!(started.elapsed() < Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(100));
    let metrics = c.get("/metrics").expect("metrics").text();
    assert!(metrics.contains("bulkhead_server_watchers 0"), "{metrics}");
}
