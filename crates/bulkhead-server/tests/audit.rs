//! The audit log: what is recorded, and that `verify` catches every edit, reorder and
//! removal (also of the last record).

mod common;

use std::path::{Path, PathBuf};

use bulkhead_api::Kind;
use bulkhead_server::audit::{HEAD_FILE, LOG_FILE};
use bulkhead_server::verify;
use common::{TestServer, expect, gnp, object, rv};
use serde_json::{Value, json};

const GNPS: &str = "/apis/projectcalico.org/v3/globalnetworkpolicies";

/// A server's audit log after a create, two updates and a delete of one policy, plus a
/// denied request; returns the stopped server (for its directory).
fn history() -> TestServer {
    let mut t = TestServer::start();
    let c = t.admin();
    expect(
        c.send_json("POST", GNPS, &gnp("p", "default"))
            .expect("post"),
        201,
    );
    for app in ["a", "b"] {
        let mut doc = gnp("p", "default");
        doc["metadata"]["labels"] = json!({"app": app});
        expect(
            c.send_json("PUT", &object(Kind::GlobalNetworkPolicy, "p"), &doc)
                .expect("put"),
            200,
        );
    }
    expect(
        c.delete(&object(Kind::GlobalNetworkPolicy, "p"))
            .expect("delete"),
        200,
    );
    expect(t.client(None).get(GNPS).expect("get"), 401);
    t.stop();
    t
}

/// Copies the log and head of `t` into a fresh directory, so each case tampers on its own.
fn copy(t: &TestServer) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    for f in [LOG_FILE, HEAD_FILE] {
        std::fs::copy(t.data_dir().join(f), dir.path().join(f)).expect("copy");
    }
    let log = dir.path().join(LOG_FILE);
    (dir, log)
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("read")
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).expect("write");
}

#[test]
fn changes_and_denials_are_recorded_with_before_and_after() {
    let t = history();
    let log = t.data_dir().join(LOG_FILE);
    assert_eq!(verify(&log), Ok(5));
    let records: Vec<Value> = lines(&log)
        .iter()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    let outcomes: Vec<&str> = records
        .iter()
        .filter_map(|r| r["outcome"].as_str())
        .collect();
    assert_eq!(
        outcomes,
        [
            "created",
            "updated",
            "updated",
            "deleted",
            "unauthenticated"
        ]
    );
    let update = &records[1];
    assert_eq!(update["user"], "admin");
    assert_eq!(update["verb"], "update");
    assert_eq!(update["kind"], "GlobalNetworkPolicy");
    assert_eq!(update["tier"], "default");
    assert_eq!(update["before"]["metadata"]["labels"], Value::Null);
    assert_eq!(update["after"]["metadata"]["labels"]["app"], "a");
    assert_eq!(update["revision"].as_u64(), Some(rv(&update["after"])));
    assert!(
        update["requestId"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    assert_eq!(records[3]["after"], Value::Null);
    assert_eq!(records[3]["before"]["metadata"]["labels"]["app"], "b");
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r["seq"], i + 1);
        assert!(r["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    }
    assert_eq!(records[1]["prev"], records[0]["hash"]);
}

#[test]
fn an_edited_record_is_detected() {
    let t = history();
    let (_dir, log) = copy(&t);
    let mut l = lines(&log);
    l[1] = l[1].replace("\"user\":\"admin\"", "\"user\":\"mallory\"");
    write_lines(&log, &l);
    let e = verify(&log).expect_err("edit detected");
    assert_eq!(e.line, 2);
    assert!(e.reason.contains("edited"), "{e}");

    // An editor who also recomputes the edited record's own hash breaks the next link.
    let (_dir, log) = copy(&t);
    let mut l = lines(&log);
    let mut record: serde_json::Map<String, Value> = serde_json::from_str(&l[1]).expect("JSON");
    record.insert("user".into(), "mallory".into());
    record.remove("hash").expect("hash");
    let body = serde_json::to_string(&Value::Object(record)).expect("encode");
    let digest = bulkhead_server::util::sha256_hex(body.as_bytes());
    l[1] = format!("{},\"hash\":\"{digest}\"}}", &body[..body.len() - 1]);
    write_lines(&log, &l);
    let e = verify(&log).expect_err("rehashed edit detected");
    assert_eq!(e.line, 3, "{e}");
    assert!(e.reason.contains("chain broken"), "{e}");
}

#[test]
fn a_reordered_record_is_detected() {
    let t = history();
    let (_dir, log) = copy(&t);
    let mut l = lines(&log);
    l.swap(1, 2);
    write_lines(&log, &l);
    let e = verify(&log).expect_err("reorder detected");
    assert_eq!(e.line, 2);
    assert!(e.reason.contains("out of place"), "{e}");
}

#[test]
fn a_removed_record_is_detected_in_the_middle_and_at_the_end() {
    let t = history();
    let (_dir, log) = copy(&t);
    let mut l = lines(&log);
    l.remove(2);
    write_lines(&log, &l);
    let e = verify(&log).expect_err("removal detected");
    assert_eq!(e.line, 3);

    let (_dir, log) = copy(&t);
    let mut l = lines(&log);
    l.pop();
    write_lines(&log, &l);
    let e = verify(&log).expect_err("removal of the last record detected");
    assert_eq!(e.line, 5);
    assert!(e.reason.contains("removed from the end"), "{e}");

    // Emptying the log entirely is a removal too.
    let (_dir, log) = copy(&t);
    std::fs::write(&log, "").expect("truncate");
    assert_eq!(verify(&log).expect_err("emptied").line, 1);

    // And so is deleting the head file along with the last record.
    let (dir, log) = copy(&t);
    let mut l = lines(&log);
    l.pop();
    write_lines(&log, &l);
    std::fs::remove_file(dir.path().join(HEAD_FILE)).expect("rm head");
    assert!(
        verify(&log)
            .expect_err("missing head")
            .reason
            .contains("missing")
    );
}

#[test]
fn a_half_written_record_is_cut_off_at_start_and_the_chain_goes_on() {
    let mut t = history();
    let log = t.data_dir().join(LOG_FILE);
    let mut text = std::fs::read_to_string(&log).expect("read");
    text.push_str("{\"seq\":6,\"time\":\"2026-");
    std::fs::write(&log, &text).expect("write");
    assert!(verify(&log).expect_err("torn").reason.contains("cut short"));
    t.restart();
    assert_eq!(verify(&log), Ok(5), "the start cut the torn line");
    let c = t.admin();
    expect(
        c.send_json("POST", GNPS, &gnp("q", "default"))
            .expect("post"),
        201,
    );
    assert_eq!(
        verify(&log),
        Ok(6),
        "appends continue the chain across restarts"
    );
}

#[test]
fn the_audit_endpoint_filters_records() {
    let t = TestServer::start();
    let c = t.admin();
    expect(
        c.send_json("POST", GNPS, &gnp("p", "default"))
            .expect("post"),
        201,
    );
    let tier = common::sample(Kind::Tier, "app");
    expect(
        c.send_json("POST", &common::collection(Kind::Tier), &tier)
            .expect("post"),
        201,
    );
    let list = |q: &str| -> Vec<Value> {
        let r = expect(
            c.get(&format!("/bulkhead/v1/audit?{q}")).expect("audit"),
            200,
        );
        r["items"].as_array().cloned().unwrap_or_default()
    };
    assert_eq!(list("").len(), 2);
    assert_eq!(list("kind=Tier")[0]["name"], "app");
    assert_eq!(list("tier=default")[0]["name"], "p");
    assert_eq!(list("user=nobody").len(), 0);
    assert_eq!(list("since=2999-01-01T00:00:00Z").len(), 0);
    assert_eq!(list("since=2000-01-01T00:00:00Z").len(), 2);
    let limited = expect(c.get("/bulkhead/v1/audit?limit=1").expect("audit"), 200);
    assert_eq!(limited["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(limited["metadata"]["remainingItemCount"], 1);
    expect(
        c.get("/bulkhead/v1/audit?since=yesterday").expect("audit"),
        400,
    );
}

#[test]
fn changes_committed_but_not_audited_before_a_crash_are_recorded_at_the_next_start() {
    let mut t = TestServer::start();
    let c = t.admin();
    let first = expect(
        c.send_json("POST", GNPS, &gnp("p", "default"))
            .expect("post"),
        201,
    );
    t.stop();
    // What a crash between the store commit and the audit append leaves behind: a change in
    // the store that no record mentions.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let key = "/registry/projectcalico.org/globalnetworkpolicies/ghost";
    let mut doc = gnp("ghost", "default");
    doc["metadata"]["uid"] = "u".into();
    let revision = rt.block_on(async {
        use bulkhead_store::Store;
        // The stopped server's last handles may still be closing on another thread.
        let mut opened = None;
        for _ in 0..200 {
            match bulkhead_store::EmbeddedStore::open(
                t.data_dir().join("store"),
                bulkhead_store::EmbeddedOptions::default(),
            ) {
                Ok(store) => {
                    opened = Some(store);
                    break;
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(25)).await,
            }
        }
        let store = opened.expect("open");
        store
            .put(
                key,
                serde_json::to_vec(&doc).expect("encode"),
                bulkhead_store::Expect::Absent,
            )
            .await
            .expect("put")
    });
    assert_eq!(revision, rv(&first) + 1);
    t.restart();
    let log = t.data_dir().join(LOG_FILE);
    assert_eq!(verify(&log), Ok(2));
    let last: Value = serde_json::from_str(lines(&log).last().expect("record")).expect("JSON");
    assert_eq!(last["type"], "change");
    assert_eq!(last["outcome"], "created");
    assert_eq!(last["name"], "ghost");
    assert_eq!(last["revision"], revision);
    assert_eq!(last["user"], "");
    assert!(
        last["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("recovered at start"))
    );
    // A second start finds nothing more to recover.
    t.restart();
    assert_eq!(verify(&log), Ok(2));
}
