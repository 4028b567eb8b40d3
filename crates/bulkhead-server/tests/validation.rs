//! Bad requests get a precise 4xx and store nothing.

mod common;

use bulkhead_api::Kind;
use bulkhead_server::client::Client;
use common::{TestServer, collection, expect, gnp, object, rv, sample};
use serde_json::{Value, json};

/// The store's state as the API shows it: the revision of a list of every kind, which moves
/// with any write anywhere.
fn revision(c: &Client) -> u64 {
    rv(&expect(c.get(&collection(Kind::Tier)).expect("list"), 200))
}

/// Sends `body` with `content_type` to `method path`, expects `status` and `reason`, and
/// checks that the store did not change. Returns the Status.
#[track_caller]
fn rejected(
    c: &Client,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
    status: u16,
    reason: &str,
) -> Value {
    let before = revision(c);
    let r = c
        .request(method, path, content_type, body)
        .expect("request");
    let s = expect(r, status);
    assert_eq!(s["kind"], "Status");
    assert_eq!(s["reason"], reason, "{s}");
    assert_eq!(s["code"], status);
    assert_eq!(revision(c), before, "nothing may be stored: {s}");
    s
}

fn message(s: &Value) -> &str {
    s["message"].as_str().unwrap_or("")
}

#[test]
fn malformed_bodies_are_bad_requests_with_a_position() {
    let t = TestServer::start();
    let c = t.admin();
    let gnps = collection(Kind::GlobalNetworkPolicy);
    let s = rejected(
        &c,
        "POST",
        &gnps,
        Some("application/json"),
        b"{\"apiVersion\": \"projectcalico.org/v3\",\n \"kind\": }",
        400,
        "BadRequest",
    );
    assert!(
        message(&s).starts_with("malformed JSON at line 2 column"),
        "{s}"
    );
    let s = rejected(
        &c,
        "POST",
        &gnps,
        Some("application/yaml"),
        b"apiVersion: projectcalico.org/v3\nkind: [unclosed\n",
        400,
        "BadRequest",
    );
    assert!(message(&s).starts_with("malformed YAML"), "{s}");
    let s = rejected(
        &c,
        "POST",
        &gnps,
        Some("application/json"),
        b"",
        400,
        "BadRequest",
    );
    assert!(message(&s).contains("empty"), "{s}");
    let s = rejected(
        &c,
        "POST",
        &gnps,
        Some("application/json"),
        b"[1, 2]",
        400,
        "BadRequest",
    );
    assert!(message(&s).contains("must be an object"), "{s}");
    rejected(
        &c,
        "POST",
        &gnps,
        Some("text/plain"),
        b"{}",
        415,
        "UnsupportedMediaType",
    );
    let s = rejected(
        &c,
        "PATCH",
        &object(Kind::GlobalNetworkPolicy, "x"),
        Some("application/json-patch+json"),
        b"[]",
        415,
        "UnsupportedMediaType",
    );
    assert!(message(&s).contains("merge-patch"), "{s}");
}

#[test]
fn yaml_bodies_are_accepted() {
    let t = TestServer::start();
    let c = t.admin();
    let yaml = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: from-yaml}\nspec:\n  selector: role == 'db'\n  ingress: [{action: Allow}]\n";
    let r = c
        .request(
            "POST",
            &collection(Kind::GlobalNetworkPolicy),
            Some("application/yaml"),
            yaml.as_bytes(),
        )
        .expect("post");
    let created = expect(r, 201);
    assert_eq!(created["spec"]["types"], json!(["Ingress"]));
}

#[test]
fn oversized_bodies_are_413_and_store_nothing() {
    let t = TestServer::start();
    let c = t.admin();
    let mut doc = gnp("big", "default");
    doc["metadata"]["annotations"] = json!({"blob": "x".repeat(1 << 20)});
    let body = serde_json::to_vec(&doc).expect("encode");
    let s = rejected(
        &c,
        "POST",
        &collection(Kind::GlobalNetworkPolicy),
        Some("application/json"),
        &body,
        413,
        "RequestEntityTooLarge",
    );
    assert!(message(&s).contains("1048576"), "{s}");
    rejected(
        &c,
        "PUT",
        &object(Kind::GlobalNetworkPolicy, "big"),
        Some("application/json"),
        &body,
        413,
        "RequestEntityTooLarge",
    );
    expect(
        c.get(&object(Kind::GlobalNetworkPolicy, "big"))
            .expect("get"),
        404,
    );
}

#[test]
fn wrong_kinds_names_and_namespaces_are_bad_requests() {
    let t = TestServer::start();
    let c = t.admin();
    let gnps = collection(Kind::GlobalNetworkPolicy);
    let tier = serde_json::to_vec(&sample(Kind::Tier, "t")).expect("encode");
    let s = rejected(&c, "POST", &gnps, None, &tier, 400, "BadRequest");
    assert_eq!(
        message(&s),
        "the body is projectcalico.org/v3 Tier but /apis/projectcalico.org/v3/globalnetworkpolicies serves projectcalico.org/v3 GlobalNetworkPolicy"
    );
    // The Kubernetes NetworkPolicy is not the Calico one.
    let k8s = serde_json::to_vec(&sample(Kind::KubernetesNetworkPolicy, "k")).expect("encode");
    rejected(
        &c,
        "POST",
        &collection(Kind::NetworkPolicy),
        None,
        &k8s,
        400,
        "BadRequest",
    );
    let list = br#"{"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicyList", "items": []}"#;
    rejected(&c, "POST", &gnps, None, list, 400, "BadRequest");
    let body = serde_json::to_vec(&gnp("a", "default")).expect("encode");
    let s = rejected(
        &c,
        "PUT",
        &object(Kind::GlobalNetworkPolicy, "b"),
        None,
        &body,
        400,
        "BadRequest",
    );
    assert!(
        message(&s).contains("does not match the name in the path"),
        "{s}"
    );
    let np = serde_json::to_vec(&sample(Kind::NetworkPolicy, "n")).expect("encode");
    let s = rejected(
        &c,
        "POST",
        "/apis/projectcalico.org/v3/namespaces/other/networkpolicies",
        None,
        &np,
        400,
        "BadRequest",
    );
    assert!(
        message(&s).contains("does not match the namespace in the path"),
        "{s}"
    );
}

#[test]
fn invalid_objects_are_422_with_field_paths() {
    let t = TestServer::start();
    let c = t.admin();
    let gnps = collection(Kind::GlobalNetworkPolicy);
    let mut doc = gnp("bad", "default");
    doc["spec"]["selector"] = "app = 'x'".into();
    doc["spec"]["ingress"] = json!([{"action": "Allow"}, {"action": "Bogus"}]);
    let s = rejected(
        &c,
        "POST",
        &gnps,
        None,
        &serde_json::to_vec(&doc).expect("encode"),
        422,
        "Invalid",
    );
    assert_eq!(s["details"]["kind"], "GlobalNetworkPolicy");
    assert_eq!(s["details"]["name"], "bad");
    let causes = s["details"]["causes"].as_array().expect("causes");
    let fields: Vec<&str> = causes.iter().filter_map(|c| c["field"].as_str()).collect();
    assert!(
        fields.iter().any(|f| f.starts_with("spec.ingress[1]")),
        "{s}"
    );
    assert!(
        message(&s).starts_with("GlobalNetworkPolicy \"bad\" is invalid: "),
        "{s}"
    );

    let mut doc = gnp("sel", "default");
    doc["spec"]["selector"] = "app = 'x'".into();
    let s = rejected(
        &c,
        "POST",
        &gnps,
        None,
        &serde_json::to_vec(&doc).expect("encode"),
        422,
        "Invalid",
    );
    assert_eq!(s["details"]["causes"][0]["field"], "spec.selector", "{s}");
    assert!(
        s["details"]["causes"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("col")),
        "{s}"
    );

    let mut doc = gnp("unknown", "default");
    doc["spec"]["selectr"] = "all()".into();
    let s = rejected(
        &c,
        "POST",
        &gnps,
        None,
        &serde_json::to_vec(&doc).expect("encode"),
        422,
        "Invalid",
    );
    let cause = &s["details"]["causes"][0];
    assert_eq!(cause["field"], "spec.selectr", "{s}");
    assert!(
        cause["message"]
            .as_str()
            .is_some_and(|m| m.contains("unknown field `selectr`")),
        "{s}"
    );

    let mut doc = gnp("Bad_Name", "default");
    doc["metadata"]["name"] = "Bad_Name".into();
    let s = rejected(
        &c,
        "POST",
        &gnps,
        None,
        &serde_json::to_vec(&doc).expect("encode"),
        422,
        "Invalid",
    );
    assert_eq!(s["details"]["causes"][0]["field"], "metadata.name", "{s}");

    // A patch that would make the object invalid is refused and changes nothing.
    expect(
        c.send_json("POST", &gnps, &gnp("ok", "default"))
            .expect("post"),
        201,
    );
    let patch = json!({"spec": {"ingress": [{"action": "Sideways"}]}});
    let s = rejected(
        &c,
        "PATCH",
        &object(Kind::GlobalNetworkPolicy, "ok"),
        Some("application/merge-patch+json"),
        patch.to_string().as_bytes(),
        422,
        "Invalid",
    );
    assert!(
        s["details"]["causes"][0]["field"]
            .as_str()
            .is_some_and(|f| f.starts_with("spec.ingress[0]")),
        "{s}"
    );
}

#[test]
fn nothing_is_stored_for_any_rejected_request() {
    let t = TestServer::start();
    let c = t.admin();
    let before = revision(&c);
    let list = expect(
        c.get("/apis/projectcalico.org/v3/globalnetworkpolicies")
            .expect("list"),
        200,
    );
    assert_eq!(list["items"], json!([]));
    // Everything the tests above send, once more, then the store must still be empty.
    for body in [
        &b"{"[..],
        b"[]",
        b"{\"apiVersion\": 1}",
        b"{\"apiVersion\": \"v1\", \"kind\": \"Pod\"}",
    ] {
        let r = c
            .request(
                "POST",
                "/apis/projectcalico.org/v3/globalnetworkpolicies",
                None,
                body,
            )
            .expect("post");
        assert!((400..500).contains(&r.status), "{}", r.text());
    }
    assert_eq!(revision(&c), before);
}

#[test]
fn json_strings_round_trip_even_where_yaml_cannot_hold_the_characters() {
    let t = TestServer::start();
    let c = t.admin();
    // DEL, C1 controls, NEL and U+FFFF are valid in JSON strings; the loader reads YAML.
    let note = "a\u{7f}b\u{8d}c\u{85}d\u{ffff}e";
    let mut doc = gnp("odd-annotation", "default");
    doc["metadata"]["annotations"] = json!({ "note": note });
    let created = expect(
        c.send_json("POST", &collection(Kind::GlobalNetworkPolicy), &doc)
            .expect("post"),
        201,
    );
    assert_eq!(created["metadata"]["annotations"]["note"], note);
    let read = expect(
        c.get(&object(Kind::GlobalNetworkPolicy, "odd-annotation"))
            .expect("get"),
        200,
    );
    assert_eq!(read["metadata"]["annotations"]["note"], note);
}

#[test]
fn writes_warn_of_fields_that_are_accepted_but_not_enforced() {
    let t = TestServer::start();
    let c = t.admin();
    let warnings = |r: &bulkhead_server::client::Response| -> Vec<String> {
        r.headers
            .iter()
            .filter(|(k, _)| k == "warning")
            .map(|(_, v)| v.clone())
            .collect()
    };
    let path = collection(Kind::GlobalNetworkPolicy);
    let mut doc = gnp("gateway", "default");
    doc["spec"]["ingress"] = json!([
        {"action": "Allow", "protocol": "TCP", "http": {"methods": ["GET"]}},
        {"action": "Deny", "protocol": "UDP"},
        {"action": "Allow", "protocol": "TCP", "http": {"paths": [{"prefix": "/api"}]}}]);
    let body = serde_json::to_vec(&doc).expect("json");
    let r = c
        .request("POST", &path, Some("application/json"), &body)
        .expect("post");
    let got = warnings(&r);
    expect(r, 201);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got[0].starts_with("299 - \"spec.ingress[0].http: HTTP matches are not enforced"),
        "{got:?}"
    );
    assert!(
        got[1].starts_with("299 - \"spec.ingress[2].http: HTTP matches are not enforced"),
        "{got:?}"
    );
    // A merge patch that clears both fields leaves nothing to warn of.
    let patch = br#"{"spec": {"ingress": [{"action": "Allow"}]}}"#;
    let r = c
        .request(
            "PATCH",
            &object(Kind::GlobalNetworkPolicy, "gateway"),
            Some("application/merge-patch+json"),
            patch,
        )
        .expect("patch");
    assert_eq!(warnings(&r), Vec::<String>::new());
    expect(r, 200);
}

#[test]
fn boolean_query_parameters_take_only_booleans() {
    let t = TestServer::start();
    let c = t.admin();
    let path = collection(Kind::GlobalNetworkPolicy);
    for bad in ["watch=null", "allowWatchBookmarks=yes&watch=1"] {
        let s = rejected(
            &c,
            "GET",
            &format!("{path}?{bad}"),
            None,
            b"",
            400,
            "BadRequest",
        );
        assert!(message(&s).contains("is not a boolean"), "{s}");
    }
    let list = expect(
        c.request("GET", &format!("{path}?watch=false"), None, b"")
            .expect("list"),
        200,
    );
    assert_eq!(list["kind"], "GlobalNetworkPolicyList");
}
