//! The CNI plugin's answers to bad input: the CNI spec's well-known error codes on stdout,
//! a non-zero exit, and nothing changed. Needs no root (nothing here reaches a namespace).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A resource directory of the test's own, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let path = std::env::temp_dir().join(format!("bulkhead-cni-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        Dir(path)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn conf(dir: &Path, version: &str, subnet: &str) -> String {
    format!(
        r#"{{"cniVersion":"{version}","name":"bulkhead","type":"bulkhead","node":"n1","nodeNetns":"bh-cni-test-none","resourceDir":"{}","ipam":{{"subnet":"{subnet}"}}}}"#,
        dir.display()
    )
}

/// Runs the plugin with `env` (plus the usual container variables unless overridden)
/// and `stdin`; returns (success, the JSON on stdout).
fn cni(env: &[(&str, Option<&str>)], stdin: &str) -> (bool, serde_json::Value) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bulkhead"));
    cmd.arg("cni")
        .env("CNI_CONTAINERID", "c0ffee")
        .env("CNI_NETNS", "/run/netns/bh-cni-test-none")
        .env("CNI_IFNAME", "eth0")
        .env("CNI_ARGS", "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=b")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (key, value) in env {
        match value {
            Some(v) => cmd.env(key, v),
            None => cmd.env_remove(key),
        };
    }
    let mut child = cmd.spawn().expect("the plugin runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("the plugin finishes");
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (out.status.success(), json)
}

/// Asserts a CNI error result with `code` whose text mentions `mentions`.
fn assert_error(result: (bool, serde_json::Value), code: u64, mentions: &str) {
    let (ok, json) = result;
    assert!(!ok, "a failure exits non-zero: {json}");
    assert_eq!(json["code"].as_u64(), Some(code), "{json}");
    let text = format!("{} {}", json["msg"], json["details"]);
    assert!(text.contains(mentions), "{json}");
}

#[test]
fn bad_input_gets_the_well_known_error_codes() {
    let dir = Dir::new("codes");
    let good = conf(&dir.0, "1.0.0", "10.65.1.0/24");
    let add = [("CNI_COMMAND", Some("ADD"))];

    assert_error(cni(&add, "{\"cniVersion\": "), 6, "network configuration");
    let no_netns = good.replace(r#""nodeNetns":"bh-cni-test-none","#, "");
    assert_error(cni(&add, &no_netns), 7, "nodeNetns");
    assert_error(
        cni(&add, &conf(&dir.0, "0.1.0", "10.65.1.0/24")),
        1,
        "0.1.0",
    );
    assert_error(
        cni(&add, &conf(&dir.0, "1.0.0", "10.65.1.0/33")),
        7,
        "10.65.1.0/33",
    );
    assert_error(
        cni(
            &[("CNI_COMMAND", Some("ADD")), ("CNI_CONTAINERID", None)],
            &good,
        ),
        4,
        "CNI_CONTAINERID",
    );
    assert_error(cni(&[("CNI_COMMAND", Some("FOO"))], &good), 4, "FOO");
    assert_error(
        cni(
            &[
                ("CNI_COMMAND", Some("ADD")),
                ("CNI_ARGS", Some("K8S_POD_NAME=b;BULKHEAD_LABELS=nolabel")),
            ],
            &good,
        ),
        4,
        "BULKHEAD_LABELS",
    );
    // None of that leased an address or registered anything.
    assert!(!dir.0.exists(), "bad input changed {}", dir.0.display());
}

#[test]
fn check_of_a_container_never_added_fails_and_leases_nothing() {
    let dir = Dir::new("check");
    let result = cni(
        &[("CNI_COMMAND", Some("CHECK"))],
        &conf(&dir.0, "1.0.0", "10.65.1.0/24"),
    );
    assert_error(result, 100, "has no address");
    let leases = dir.0.join(".ipam").join("ipam-10.65.1.0_24.json");
    let text = std::fs::read_to_string(&leases).unwrap_or_default();
    assert!(!text.contains("c0ffee"), "CHECK leased an address: {text}");
}
