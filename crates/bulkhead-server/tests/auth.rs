//! Authentication (401), tier RBAC (403 with the reason), and their audit records.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use bulkhead_api::Kind;
use bulkhead_server::client::Client;
use common::{TestServer, collection, expect, gnp, object, sample};
use serde_json::{Value, json};

const ALICE: &str = "alice-token-0123456789abcdef";
const AGENT: &str = "agent-token-0123456789abcdef";
const GNPS: &str = "/apis/projectcalico.org/v3/globalnetworkpolicies";

const RBAC: &str = r#"
users:
  - {name: alice, token: "alice-token-0123456789abcdef", groups: [team-dev]}
  - {name: agent-n1, token: "agent-token-0123456789abcdef", groups: [agents]}
roles:
  - name: app-editor
    rules:
      - {verbs: [get, list, watch, create, update, patch, delete],
         kinds: [NetworkPolicy, GlobalNetworkPolicy, StagedNetworkPolicy, StagedGlobalNetworkPolicy],
         tiers: [app], namespaces: ["*"]}
  - name: agent
    rules: [{verbs: [get, list, watch], kinds: ["*"]}]
  - name: node-n1
    rules: [{verbs: [create, patch], kinds: [Node], names: [n1]}]
bindings:
  - {role: app-editor, groups: [team-dev]}
  - {role: agent, groups: [agents]}
  - {role: node-n1, users: [agent-n1]}
protectedTiers: [security]
"#;

fn audit(c: &Client, query: &str) -> Vec<Value> {
    let list = expect(
        c.get(&format!("/bulkhead/v1/audit?{query}"))
            .expect("audit"),
        200,
    );
    list["items"].as_array().cloned().unwrap_or_default()
}

fn setup() -> TestServer {
    let t = TestServer::start();
    t.write_rbac(RBAC, ALICE);
    let admin = t.admin();
    for tier in ["app", "security"] {
        expect(
            admin
                .send_json("POST", &collection(Kind::Tier), &sample(Kind::Tier, tier))
                .expect("post"),
            201,
        );
    }
    t
}

#[test]
fn requests_without_a_valid_token_are_401_and_audited() {
    let t = TestServer::start();
    let anonymous = t.client(None);
    let s = expect(anonymous.get(GNPS).expect("get"), 401);
    assert_eq!(
        (s["reason"].as_str(), s["code"].as_u64()),
        (Some("Unauthorized"), Some(401))
    );
    assert!(
        s["message"]
            .as_str()
            .is_some_and(|m| m.contains("bearer token is required"))
    );
    let forged = t.client(Some("not-a-token-at-all-0000000000"));
    let s = expect(
        forged
            .send_json("POST", GNPS, &gnp("x", "default"))
            .expect("post"),
        401,
    );
    assert!(
        s["message"]
            .as_str()
            .is_some_and(|m| m.contains("not valid"))
    );
    expect(
        t.admin()
            .get(&object(Kind::GlobalNetworkPolicy, "x"))
            .expect("get"),
        404,
    );
    // Probes and the API description stay open.
    assert_eq!(anonymous.get("/healthz").expect("healthz").status, 200);
    assert_eq!(anonymous.get("/metrics").expect("metrics").status, 200);
    assert_eq!(anonymous.get("/openapi.json").expect("openapi").status, 200);
    let records = audit(&t.admin(), "type=denied");
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(records[0]["outcome"], "unauthenticated");
    assert_eq!(records[0]["kind"], GNPS);
    assert_eq!(records[1]["verb"], "post");
    assert_eq!(records[1]["code"], 401);
}

#[test]
fn the_admin_token_is_private_to_its_owner() {
    let t = TestServer::start();
    let path = t.data_dir().join("admin.token");
    let mode = std::fs::metadata(&path)
        .expect("token file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(t.token.len(), 64);
    let dir_mode = std::fs::metadata(t.data_dir())
        .expect("dir")
        .permissions()
        .mode();
    assert_eq!(
        dir_mode & 0o077,
        0,
        "the data directory is not readable by others"
    );
}

#[test]
fn a_team_token_writing_another_teams_tier_is_403_and_audited_with_an_alert() {
    let t = setup();
    let admin = t.admin();
    let alice = t.client(Some(ALICE));
    expect(
        alice
            .send_json("POST", GNPS, &gnp("app-web", "app"))
            .expect("post"),
        201,
    );
    let s = expect(
        alice
            .send_json("POST", GNPS, &gnp("sneaky", "security"))
            .expect("post"),
        403,
    );
    assert_eq!(s["reason"], "Forbidden");
    let message = s["message"].as_str().expect("message");
    assert!(
        message.contains("user \"alice\" (groups team-dev) cannot create GlobalNetworkPolicy \"sneaky\" in tier \"security\"")
            && message.contains("{verbs: [create], kinds: [GlobalNetworkPolicy], tiers: [security]}"),
        "{message}"
    );
    expect(
        admin
            .get(&object(Kind::GlobalNetworkPolicy, "sneaky"))
            .expect("get"),
        404,
    );

    // Moving her own policy into the protected tier is also a write to that tier.
    let r = alice
        .send_json(
            "PUT",
            &object(Kind::GlobalNetworkPolicy, "app-web"),
            &gnp("app-web", "security"),
        )
        .expect("put");
    expect(r, 403);
    // The admin's policy in the security tier is invisible and untouchable for her.
    expect(
        admin
            .send_json("POST", GNPS, &gnp("sec-base", "security"))
            .expect("post"),
        201,
    );
    expect(
        alice
            .get(&object(Kind::GlobalNetworkPolicy, "sec-base"))
            .expect("get"),
        403,
    );
    expect(
        alice
            .delete(&object(Kind::GlobalNetworkPolicy, "sec-base"))
            .expect("delete"),
        403,
    );
    let listed = expect(alice.get(GNPS).expect("list"), 200);
    let names: Vec<&str> = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["app-web"], "lists show only the tiers she may read");
    // Kinds outside her rules are refused outright.
    expect(alice.get(&collection(Kind::Tier)).expect("list"), 403);

    let denied = audit(&admin, "type=denied&user=alice");
    let first = &denied[0];
    assert_eq!(
        (
            first["verb"].as_str(),
            first["kind"].as_str(),
            first["name"].as_str(),
            first["tier"].as_str()
        ),
        (
            Some("create"),
            Some("GlobalNetworkPolicy"),
            Some("sneaky"),
            Some("security")
        )
    );
    assert_eq!(first["outcome"], "forbidden");
    assert_eq!(first["code"], 403);
    assert_eq!(first["message"], message);
    assert!(denied.len() >= 4, "{denied:?}");
    let alerts = audit(&admin, "type=alert");
    assert!(
        alerts
            .iter()
            .any(|a| a["user"] == "alice" && a["tier"] == "security"),
        "a denied write to a protected tier raises an alert: {alerts:?}"
    );
    // A real change to the protected tier raises an alert too, after its change record.
    let all = audit(&admin, "tier=security&user=admin");
    let kinds: Vec<&str> = all.iter().filter_map(|r| r["type"].as_str()).collect();
    assert!(
        kinds.windows(2).any(|w| w == ["change", "alert"]),
        "{kinds:?}"
    );
    assert!(
        audit(&admin, "user=alice&type=change")
            .iter()
            .all(|r| r["tier"] == "app")
    );
}

#[test]
fn agents_read_everything_and_write_only_the_objects_named_for_them() {
    let t = setup();
    let agent = t.client(Some(AGENT));
    expect(agent.get(GNPS).expect("list"), 200);
    expect(agent.get(&collection(Kind::Tier)).expect("list"), 200);
    let mut events = agent
        .watch(
            &format!("{GNPS}?watch=1&timeoutSeconds=1"),
            Some(Duration::from_secs(5)),
        )
        .expect("watch");
    assert!(events.next().is_none());
    let s = expect(
        agent
            .send_json("POST", &collection(Kind::Pod), &sample(Kind::Pod, "p"))
            .expect("post"),
        403,
    );
    assert!(
        s["message"]
            .as_str()
            .is_some_and(|m| m.contains("cannot create Pod")),
        "{s}"
    );
    expect(agent.get("/bulkhead/v1/audit").expect("audit"), 403);
    // Its own node, by a rule with names; no other.
    let node = |name| {
        agent
            .send_json("POST", &collection(Kind::Node), &sample(Kind::Node, name))
            .expect("post")
    };
    expect(node("n1"), 201);
    let s = expect(node("n2"), 403);
    assert!(
        s["message"].as_str().is_some_and(|m| m.contains(
            "cannot create Node \"n2\": no bound rule covers it; it needs a rule {verbs: [create], kinds: [Node]}"
        )),
        "{s}"
    );
    let who = expect(agent.get("/bulkhead/v1/whoami").expect("whoami"), 200);
    assert_eq!(
        who,
        json!({"kind": "WhoAmI", "apiVersion": "bulkhead/v1", "user": "agent-n1", "groups": ["agents"], "admin": false})
    );
}

#[test]
fn rbac_yaml_is_reloaded_and_a_broken_file_keeps_the_last_good_policy() {
    let t = setup();
    let alice = t.client(Some(ALICE));
    expect(alice.get(GNPS).expect("list"), 200);
    std::fs::write(
        t.data_dir().join("rbac.yaml"),
        "users: [{name: alice, token: short}]",
    )
    .expect("write");
    std::thread::sleep(Duration::from_millis(400));
    expect(alice.get(GNPS).expect("list"), 200);
    std::fs::write(t.data_dir().join("rbac.yaml"), "users: []\n").expect("write");
    let mut status = 0;
    for _ in 0..50 {
        status = alice.get(GNPS).expect("list").status;
        if status == 401 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(status, 401, "a removed user is locked out after the reload");
}
