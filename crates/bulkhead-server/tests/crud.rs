//! Create, read, replace, patch, delete and list for every kind, through real HTTP.

mod common;

use bulkhead_api::Kind;
use bulkhead_server::kinds::KindInfo;
use common::{TestServer, collection, expect, gnp, object, rv, sample};
use serde_json::json;

#[test]
fn every_kind_round_trips_through_create_get_replace_patch_delete() {
    let t = TestServer::start();
    let c = t.admin();
    for kind in Kind::ALL {
        let doc = sample(kind, "one");
        let created = expect(
            c.send_json("POST", &collection(kind), &doc).expect("post"),
            201,
        );
        let meta = &created["metadata"];
        assert!(
            meta["uid"].as_str().is_some_and(|u| u.len() == 36),
            "{kind}: {created}"
        );
        assert!(
            meta["creationTimestamp"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z'))
        );
        assert_eq!(meta["generation"], 1);
        let v1 = rv(&created);

        let got = expect(c.get(&object(kind, "one")).expect("get"), 200);
        assert_eq!(got, created, "{kind}: get returns what create returned");

        // Defaulting was applied before storing (policy types, tier, namespace).
        if kind == Kind::GlobalNetworkPolicy {
            assert_eq!(got["spec"]["tier"], "default");
            assert_eq!(got["spec"]["types"], json!(["Egress"]));
        }

        let mut changed = doc.clone();
        changed["metadata"]["labels"]["app"] = "b".into();
        changed["metadata"]["resourceVersion"] = v1.to_string().into();
        let replaced = expect(
            c.send_json("PUT", &object(kind, "one"), &changed)
                .expect("put"),
            200,
        );
        assert!(rv(&replaced) > v1);
        assert_eq!(
            replaced["metadata"]["uid"], meta["uid"],
            "{kind}: uid survives replace"
        );
        assert_eq!(
            replaced["metadata"]["creationTimestamp"],
            meta["creationTimestamp"]
        );
        assert_eq!(replaced["metadata"]["labels"]["app"], "b");

        let patch = json!({"metadata": {"labels": {"patched": "yes"}}});
        let patched = expect(
            c.request(
                "PATCH",
                &object(kind, "one"),
                Some("application/merge-patch+json"),
                patch.to_string().as_bytes(),
            )
            .expect("patch"),
            200,
        );
        assert_eq!(
            patched["metadata"]["labels"],
            json!({"app": "b", "patched": "yes"})
        );
        assert!(rv(&patched) > rv(&replaced));

        let listed = expect(c.get(&collection(kind)).expect("list"), 200);
        assert_eq!(listed["kind"], format!("{}List", kind.kind_name()));
        assert_eq!(listed["items"].as_array().map(Vec::len), Some(1), "{kind}");
        assert_eq!(listed["items"][0], patched);
        assert!(rv(&listed) >= rv(&patched));

        let deleted = expect(c.delete(&object(kind, "one")).expect("delete"), 200);
        assert_eq!(deleted["metadata"]["name"], "one");
        assert!(
            rv(&deleted) > rv(&patched),
            "the deleted object carries the delete's revision"
        );
        let gone = expect(c.get(&object(kind, "one")).expect("get"), 404);
        assert_eq!(gone["reason"], "NotFound");
        expect(c.delete(&object(kind, "one")).expect("delete"), 404);
        let missing_patch = c
            .request(
                "PATCH",
                &object(kind, "one"),
                Some("application/merge-patch+json"),
                b"{}",
            )
            .expect("patch");
        expect(missing_patch, 404);
    }
}

#[test]
fn put_creates_then_replaces_and_post_refuses_duplicates() {
    let t = TestServer::start();
    let c = t.admin();
    let path = object(Kind::GlobalNetworkPolicy, "web");
    let created = expect(
        c.send_json("PUT", &path, &gnp("web", "default"))
            .expect("put"),
        201,
    );
    let again = expect(
        c.send_json("PUT", &path, &gnp("web", "default"))
            .expect("put"),
        200,
    );
    assert_eq!(again["metadata"]["uid"], created["metadata"]["uid"]);
    assert_eq!(
        again["metadata"]["generation"], 1,
        "nothing but metadata changed"
    );
    let mut other = gnp("web", "default");
    other["spec"]["selector"] = "app == 'x'".into();
    let changed = expect(c.send_json("PUT", &path, &other).expect("put"), 200);
    assert_eq!(changed["metadata"]["generation"], 2);
    let dup = expect(
        c.send_json(
            "POST",
            &collection(Kind::GlobalNetworkPolicy),
            &gnp("web", "default"),
        )
        .expect("post"),
        409,
    );
    assert_eq!(dup["reason"], "AlreadyExists");
}

#[test]
fn a_stale_resource_version_is_a_conflict_and_changes_nothing() {
    let t = TestServer::start();
    let c = t.admin();
    let path = object(Kind::GlobalNetworkPolicy, "web");
    let first = expect(
        c.send_json("PUT", &path, &gnp("web", "default"))
            .expect("put"),
        201,
    );
    let v1 = rv(&first);
    let mut update = gnp("web", "default");
    update["metadata"]["resourceVersion"] = v1.to_string().into();
    let second = expect(c.send_json("PUT", &path, &update).expect("put"), 200);
    // The same version again is now stale.
    update["spec"]["selector"] = "app == 'late'".into();
    let conflict = expect(c.send_json("PUT", &path, &update).expect("put"), 409);
    assert_eq!(conflict["reason"], "Conflict");
    assert!(
        conflict["message"]
            .as_str()
            .is_some_and(|m| m.contains(&format!("resourceVersion {v1} is stale"))),
        "{conflict}"
    );
    let now = expect(c.get(&path).expect("get"), 200);
    assert_eq!(now, second, "the conflicting write changed nothing");
    // A patch with a stale version conflicts too.
    let patch = json!({"metadata": {"resourceVersion": v1.to_string(), "labels": {"x": "y"}}});
    let r = c
        .request(
            "PATCH",
            &path,
            Some("application/merge-patch+json"),
            patch.to_string().as_bytes(),
        )
        .expect("patch");
    expect(r, 409);
    // A replace naming a version of an object that does not exist conflicts.
    let mut ghost = gnp("ghost", "default");
    ghost["metadata"]["resourceVersion"] = "1".into();
    let r = c
        .send_json("PUT", &object(Kind::GlobalNetworkPolicy, "ghost"), &ghost)
        .expect("put");
    expect(r, 409);
    expect(
        c.get(&object(Kind::GlobalNetworkPolicy, "ghost"))
            .expect("get"),
        404,
    );
}

#[test]
fn concurrent_replaces_without_versions_all_land_and_keep_identity() {
    let t = TestServer::start();
    let c = t.admin();
    let path = object(Kind::GlobalNetworkPolicy, "hot");
    let created = expect(
        c.send_json("PUT", &path, &gnp("hot", "default"))
            .expect("put"),
        201,
    );
    std::thread::scope(|s| {
        for i in 0..4 {
            let c = c.clone();
            let path = path.clone();
            s.spawn(move || {
                for j in 0..10 {
                    let mut doc = gnp("hot", "default");
                    doc["metadata"]["labels"] = json!({"writer": format!("w{i}-{j}")});
                    expect(c.send_json("PUT", &path, &doc).expect("put"), 200);
                }
            });
        }
    });
    let now = expect(c.get(&path).expect("get"), 200);
    assert_eq!(now["metadata"]["uid"], created["metadata"]["uid"]);
    assert_eq!(
        rv(&now),
        rv(&created) + 40,
        "every write landed exactly once"
    );
}

#[test]
fn lists_filter_by_calico_label_selectors_and_namespaces() {
    let t = TestServer::start();
    let c = t.admin();
    for (name, ns, labels) in [
        ("web", "team-a", json!({"app": "web", "tier": "front"})),
        ("db", "team-a", json!({"app": "db"})),
        ("cache", "team-b", json!({"app": "cache", "tier": "back"})),
        ("bare", "team-b", json!({})),
    ] {
        let doc = json!({
            "apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"selector": "all()"},
        });
        let path = format!("/apis/projectcalico.org/v3/namespaces/{ns}/networkpolicies");
        expect(c.send_json("POST", &path, &doc).expect("post"), 201);
    }
    let names = |path: &str| -> Vec<String> {
        let list = expect(c.get(path).expect("list"), 200);
        list["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let all = "/apis/projectcalico.org/v3/networkpolicies";
    let mut everything = names(all);
    everything.sort();
    assert_eq!(everything, ["bare", "cache", "db", "web"]);
    let q = |sel: &str| format!("{all}?labelSelector={}", encode(sel));
    let sorted = |path: String| {
        let mut v = names(&path);
        v.sort();
        v
    };
    assert_eq!(sorted(q("has(tier)")), ["cache", "web"]);
    assert_eq!(sorted(q("app in {'web', 'db'}")), ["db", "web"]);
    assert_eq!(sorted(q("tier != 'front'")), ["bare", "cache", "db"]);
    assert_eq!(sorted(q("!has(app)")), ["bare"]);
    assert_eq!(
        sorted(q("app starts with 'ca' || tier == 'front'")),
        ["cache", "web"]
    );
    assert_eq!(
        sorted("/apis/projectcalico.org/v3/namespaces/team-b/networkpolicies".into()),
        ["bare", "cache"]
    );
    let bad = expect(c.get(&q("app = 'x'")).expect("list"), 400);
    assert_eq!(bad["reason"], "BadRequest");
    assert!(
        bad["message"]
            .as_str()
            .is_some_and(|m| m.contains("labelSelector") && m.contains("col")),
        "{bad}"
    );
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn paths_methods_and_namespaces_are_checked() {
    let t = TestServer::start();
    let c = t.admin();
    expect(
        c.get("/apis/projectcalico.org/v3/nosuch").expect("get"),
        404,
    );
    expect(c.get("/nothing/here").expect("get"), 404);
    let np = sample(Kind::NetworkPolicy, "x");
    let r = c
        .send_json("POST", "/apis/projectcalico.org/v3/networkpolicies", &np)
        .expect("post");
    assert_eq!(expect(r, 405)["reason"], "MethodNotAllowed");
    let r = c
        .send_json("POST", &collection(Kind::Tier), &sample(Kind::Tier, "t"))
        .expect("post");
    expect(r, 201);
    expect(
        c.request("POST", &object(Kind::Tier, "t"), None, b"{}")
            .expect("post"),
        405,
    );
    // A namespaced object posted without a namespace lands in the path's namespace.
    let mut bare = sample(Kind::NetworkPolicy, "bare");
    bare["metadata"]
        .as_object_mut()
        .expect("meta")
        .remove("namespace");
    let created = expect(
        c.send_json("POST", &collection(Kind::NetworkPolicy), &bare)
            .expect("post"),
        201,
    );
    assert_eq!(created["metadata"]["namespace"], "team-a");
    let kind_path = KindInfo::of(Kind::KubernetesNetworkPolicy).collection_path(None);
    assert_eq!(kind_path, "/apis/networking.k8s.io/v1/networkpolicies");
}

#[test]
fn health_metrics_openapi_and_whoami() {
    let t = TestServer::start();
    let c = t.client(None);
    let h = c.get("/healthz").expect("healthz");
    assert_eq!((h.status, h.text().as_str()), (200, "ok\n"));
    let admin = t.admin();
    expect(
        admin
            .send_json("POST", &collection(Kind::Tier), &sample(Kind::Tier, "t"))
            .expect("post"),
        201,
    );
    expect(admin.get(&collection(Kind::Tier)).expect("list"), 200);
    let who = expect(admin.get("/bulkhead/v1/whoami").expect("whoami"), 200);
    assert_eq!(
        (who["user"].as_str(), who["admin"].as_bool()),
        (Some("admin"), Some(true))
    );
    let api = expect(c.get("/openapi.json").expect("openapi"), 200);
    assert_eq!(api["openapi"], "3.0.3");
    assert!(
        api["paths"]["/apis/projectcalico.org/v3/globalnetworkpolicies/{name}"]["put"].is_object()
    );
    // The object counter follows the store asynchronously.
    let mut text = String::new();
    for _ in 0..100 {
        text = c.get("/metrics").expect("metrics").text();
        if text.contains("bulkhead_server_stored_objects{kind=\"Tier\"} 1") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for needle in [
        "bulkhead_server_requests_total{verb=\"create\",code=\"201\"} 1",
        "bulkhead_server_requests_total{verb=\"list\",code=\"200\"} 1",
        "bulkhead_server_request_duration_seconds_bucket{verb=\"create\",le=\"+Inf\"} 1",
        "bulkhead_server_watchers 0",
        "bulkhead_server_stored_objects{kind=\"Tier\"} 1",
        "bulkhead_audit_chain_valid 1",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
    let r = admin.get(&collection(Kind::Tier)).expect("list");
    assert!(r.header("x-request-id").is_some_and(|id| !id.is_empty()));
}

#[test]
fn objects_survive_a_restart() {
    let mut t = TestServer::start();
    let c = t.admin();
    let created = expect(
        c.send_json(
            "POST",
            &collection(Kind::GlobalNetworkPolicy),
            &gnp("keep", "default"),
        )
        .expect("post"),
        201,
    );
    t.restart();
    let c = t.admin();
    let got = expect(
        c.get(&object(Kind::GlobalNetworkPolicy, "keep"))
            .expect("get"),
        200,
    );
    assert_eq!(got, created);
}

#[test]
fn http_details_follow_the_standards() {
    let t = TestServer::start();
    let c = t.admin();
    // A 405 names the methods the path supports (RFC 9110 §15.5.6).
    let tiers = collection(Kind::Tier);
    for (method, path, allow) in [
        ("TRACE", tiers.clone(), "GET, POST"),
        ("PUT", tiers.clone(), "GET, POST"),
        ("TRACE", object(Kind::Tier, "t"), "GET, PUT, PATCH, DELETE"),
        // Across namespaces there is only the list, whatever the body.
        ("POST", "/api/v1/pods".to_string(), "GET"),
        ("TRACE", "/api/v1/pods".to_string(), "GET"),
    ] {
        let r = c.request(method, &path, None, b"").expect("request");
        assert_eq!(r.status, 405, "{method} {path}");
        assert_eq!(r.header("allow"), Some(allow), "{method} {path}");
    }
    // An empty query value counts as absent, as in Kubernetes.
    expect(
        c.get(&format!(
            "{tiers}?timeoutSeconds=&resourceVersion=&labelSelector="
        ))
        .expect("list"),
        200,
    );
    // A PUT body names its object, as in Kubernetes.
    let mut unnamed = sample(Kind::Tier, "t");
    unnamed["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("name");
    let r = c
        .send_json("PUT", &object(Kind::Tier, "t"), &unnamed)
        .expect("put");
    let status = expect(r, 400);
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.contains("metadata.name is missing")),
        "{status}"
    );
    // PUT creates what is absent, with 201, and the OpenAPI document says so.
    let created = c
        .send_json("PUT", &object(Kind::Tier, "t"), &sample(Kind::Tier, "t"))
        .expect("put");
    expect(created, 201);
    let replaced = c
        .send_json("PUT", &object(Kind::Tier, "t"), &sample(Kind::Tier, "t"))
        .expect("put");
    expect(replaced, 200);
    let api = expect(c.get("/openapi.json").expect("openapi"), 200);
    let put = &api["paths"]["/apis/projectcalico.org/v3/tiers/{name}"]["put"]["responses"];
    assert!(put["200"].is_object() && put["201"].is_object(), "{put}");
}
