//! The same API over etcd (a throwaway etcd started by `bulkhead-store`'s test harness).
//! Skipped, with a note, when the `etcd` binary is not installed.

mod common;

use std::time::Duration;

use bulkhead_api::Kind;
use bulkhead_server::StoreConfig;
use bulkhead_store::testing::EtcdServer;
use common::{TestServer, collection, expect, gnp, object, rv, sample};
use serde_json::json;

const GNPS: &str = "/apis/projectcalico.org/v3/globalnetworkpolicies";

/// etcd and a server on it; `None` (test skipped) without etcd.
fn start() -> Option<(EtcdServer, TestServer, tokio::runtime::Runtime)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let Some(etcd) = rt.block_on(EtcdServer::start()).expect("etcd start") else {
        eprintln!("skipped: etcd not installed");
        return None;
    };
    let options = etcd.options("/bulkhead-test");
    let t = TestServer::start_with(|config| config.store = StoreConfig::Etcd(options));
    Some((etcd, t, rt))
}

#[test]
fn every_kind_round_trips_over_etcd() {
    let Some((_etcd, t, _rt)) = start() else {
        return;
    };
    let c = t.admin();
    for kind in Kind::ALL {
        let created = expect(
            c.send_json("POST", &collection(kind), &sample(kind, "e"))
                .expect("post"),
            201,
        );
        let got = expect(c.get(&object(kind, "e")).expect("get"), 200);
        assert_eq!(got, created, "{kind}");
        let mut stale = sample(kind, "e");
        stale["metadata"]["resourceVersion"] = (rv(&created) - 1).to_string().into();
        expect(
            c.send_json("PUT", &object(kind, "e"), &stale).expect("put"),
            409,
        );
        let listed = expect(c.get(&collection(kind)).expect("list"), 200);
        assert_eq!(listed["items"][0], created);
        expect(c.delete(&object(kind, "e")).expect("delete"), 200);
        expect(c.get(&object(kind, "e")).expect("get"), 404);
    }
}

#[test]
fn watches_over_etcd_resume_without_gaps_or_repeats() {
    let Some((_etcd, t, _rt)) = start() else {
        return;
    };
    let c = t.admin();
    let start = rv(&expect(c.get(GNPS).expect("list"), 200));
    let mut acked = Vec::new();
    for i in 0..30 {
        let name = format!("p{}", i % 4);
        let mut doc = gnp(&name, "default");
        doc["metadata"]["labels"] = json!({"i": i.to_string()});
        let r = c
            .send_json("PUT", &object(Kind::GlobalNetworkPolicy, &name), &doc)
            .expect("put");
        acked.push(rv(&r.json().expect("json")));
        if i % 7 == 6 {
            let d = c
                .delete(&object(Kind::GlobalNetworkPolicy, &name))
                .expect("delete");
            acked.push(rv(&d.json().expect("json")));
        }
    }
    let end = *acked.last().expect("writes");
    let mut last = start;
    let mut seen = Vec::new();
    let mut connections = 0;
    while last < end {
        connections += 1;
        let mut events = c
            .watch(
                &format!("{GNPS}?watch=1&resourceVersion={last}&allowWatchBookmarks=true"),
                Some(Duration::from_secs(10)),
            )
            .expect("watch");
        for _ in 0..(2 + connections % 4) {
            let e = events.next().expect("event").expect("JSON");
            last = rv(&e["object"]);
            if e["type"] != "BOOKMARK" {
                seen.push(last);
            }
            if last >= end {
                break;
            }
        }
    }
    assert_eq!(seen, acked, "over {connections} connections");
}
