//! `node`, `workload`, `cni` and `agent` together, as processes, with real packets.
//! Needs root (skips otherwise). Everything it creates is removed, also on failure.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_bulkhead")
}

fn bulkhead(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .output()
        .expect("bulkhead runs")
}

fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Removes the test's namespaces, directories and agent on drop.
struct Cleanup {
    netns: Vec<String>,
    dirs: Vec<PathBuf>,
    agent: Option<Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(mut a) = self.agent.take() {
            let _ = a.kill();
            let _ = a.wait();
        }
        common::delete_leftover_netns(&self.netns);
        for d in &self.dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

fn ping(from: &str, to: &str) -> bool {
    Command::new("ip")
        .args(["netns", "exec", from, "ping", "-c1", "-W1", to])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::Read;
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn metrics(port: u16) -> String {
    http_get(port, "/metrics")
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn workloads_from_the_cli_and_cni_are_enforced_by_the_agent() {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let tools = Command::new("nft").arg("--version").output().is_ok()
        && Command::new("ping").arg("-V").output().is_ok();
    if !root || !tools {
        eprintln!("skipped: needs root, nft and ping");
        return;
    }
    let pid = std::process::id();
    let node = format!("bh-cli-{pid}");
    let dir = std::env::temp_dir().join(format!("bulkhead-cli-{pid}-res"));
    let state = std::env::temp_dir().join(format!("bulkhead-cli-{pid}-state"));
    let cni_ns = format!("bh-cli-{pid}-cni");
    let mut cleanup = Cleanup {
        netns: vec![
            node.clone(),
            format!("{node}-shop-a"),
            format!("{node}-shop-dup"),
            cni_ns.clone(),
        ],
        dirs: vec![dir.clone(), state.clone()],
        agent: None,
    };
    let dir_s = dir.to_str().expect("utf-8");

    ok(bulkhead(&["node", "add", &node]));
    ok(bulkhead(&[
        "workload",
        "add",
        "shop/a",
        "--node",
        &node,
        "--node-name",
        "n1",
        "--ip",
        "10.65.9.1",
        "--label",
        "app=a",
        "--dir",
        dir_s,
    ]));

    // An address already on the node is refused, and nothing is left of the attempt.
    let dup = bulkhead(&[
        "workload",
        "add",
        "shop/dup",
        "--node",
        &node,
        "--ip",
        "10.65.9.1",
        "--dir",
        dir_s,
    ]);
    let err = String::from_utf8_lossy(&dup.stderr);
    assert!(
        !dup.status.success() && err.contains("10.65.9.1 is already in use"),
        "{err}"
    );
    assert!(
        !std::path::Path::new("/run/netns")
            .join(format!("{node}-shop-dup"))
            .exists()
    );
    assert!(!dir.join("wep-shop-dup.yaml").exists());

    // The CNI plugin attaches a runtime-made namespace.
    assert!(
        Command::new("ip")
            .args(["netns", "add", &cni_ns])
            .status()
            .is_ok_and(|s| s.success())
    );
    let conf = format!(
        r#"{{"cniVersion":"1.0.0","name":"bulkhead","type":"bulkhead","node":"n1","nodeNetns":"{node}","resourceDir":"{dir_s}","ipam":{{"subnet":"10.65.9.0/28"}}}}"#
    );
    let cni = |command: &str| {
        let mut child = Command::new(bin())
            .arg("cni")
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", "c0ffee")
            .env("CNI_NETNS", format!("/run/netns/{cni_ns}"))
            .env("CNI_IFNAME", "eth0")
            .env(
                "CNI_ARGS",
                "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=b;BULKHEAD_LABELS=app=b",
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("cni runs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(conf.as_bytes())
            .expect("write conf");
        child.wait_with_output().expect("cni finishes")
    };
    let added = ok(cni("ADD"));
    let result: serde_json::Value = serde_json::from_str(&added).expect("CNI result JSON");
    let b_ip = result["ips"][0]["address"]
        .as_str()
        .expect("an address")
        .split('/')
        .next()
        .expect("ip")
        .to_string();
    assert_eq!(
        b_ip, "10.65.9.2",
        "first lease after the reserved .1 of the subnet: {added}"
    );
    ok(cni("CHECK"));
    let version = ok(Command::new(bin())
        .arg("cni")
        .env("CNI_COMMAND", "VERSION")
        .output()
        .expect("runs"));
    assert!(version.contains("1.0.0"));

    let listed = ok(bulkhead(&["workload", "list", "--dir", dir_s]));
    assert!(
        listed.contains("shop/a") && listed.contains("shop/b"),
        "{listed}"
    );

    // With no policy the namespace profile allows everything.
    let port = free_port();
    let state_s = state.to_str().expect("utf-8").to_string();
    let start_agent = |extra: &[&str]| {
        Command::new(bin())
            .args([
                "agent",
                "--node",
                "n1",
                "--netns",
                &node,
                "--from-dir",
                dir_s,
                "--state-dir",
                &state_s,
            ])
            .args([
                "--poll-ms",
                "50",
                "--resync-secs",
                "1",
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .args(extra)
            .stderr(Stdio::null())
            .spawn()
            .expect("agent starts")
    };
    cleanup.agent = Some(start_agent(&[]));
    let a_ns = format!("{node}-shop-a");
    wait_for("the agent to program the node", || {
        Command::new("ip")
            .args([
                "netns", "exec", &node, "nft", "list", "map", "inet", "bulkhead", "wl_from",
            ])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).matches("goto").count() == 2)
    });
    assert!(ping(&a_ns, &b_ip), "open without policy");

    std::fs::write(
        dir.join("isolate-b.yaml"),
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: isolate-b}\nspec: {selector: app == 'b', types: [Ingress]}\n",
    )
    .expect("write policy");
    wait_for("the policy to be enforced", || !ping(&a_ns, &b_ip));
    let table = || {
        let out = Command::new("ip")
            .args([
                "netns", "exec", &node, "nft", "list", "table", "inet", "bulkhead",
            ])
            .output()
            .expect("nft list");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // No NFLOG tags without --nflog-tags (the restarted agent below asks for them).
    assert!(!table().contains("group 1"), "{}", table());

    // Tampering: flushing the node's ruleset is repaired and counted.
    let flush = || {
        assert!(
            Command::new("ip")
                .args(["netns", "exec", &node, "nft", "flush", "ruleset"])
                .status()
                .is_ok_and(|s| s.success())
        );
    };
    flush();
    wait_for("the tamper event", || {
        metrics(port).contains("bulkhead_agent_drift_repairs_total 1")
    });
    assert!(!ping(&a_ns, &b_ip), "repaired");
    assert!(http_get(port, "/healthz").starts_with("HTTP/1.1 200"));

    // kill -9, then the rules vanish; a restarted agent restores them from its cache.
    if let Some(mut agent) = cleanup.agent.take() {
        let _ = agent.kill();
        let _ = agent.wait();
    }
    flush();
    assert!(ping(&a_ns, &b_ip), "the flush really removed the rules");
    cleanup.agent = Some(start_agent(&["--nflog-tags"]));
    wait_for("the restarted agent to restore its rules", || {
        !ping(&a_ns, &b_ip)
    });
    // isolate-b's end of tier drops b's ingress with its tag: deny, ingress, group 1.
    wait_for("the tagged table", || {
        let t = table();
        t.contains("log prefix \"DI") && t.contains("group 1 drop")
    });

    // CNI DEL removes the veth, the registration and the lease.
    ok(cni("DEL"));
    let listed = ok(bulkhead(&["workload", "list", "--dir", dir_s]));
    assert!(!listed.contains("shop/b"), "{listed}");
    ok(cni("DEL"));
    // A node with a workload attached is not deleted from under it.
    let refused = bulkhead(&["node", "del", &node]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "node del with shop/a attached");
    let a_if = listed
        .lines()
        .find(|l| l.starts_with("shop/a"))
        .and_then(|l| l.split_whitespace().nth(2))
        .expect("shop/a's interface in the list");
    assert!(err.contains(a_if) && err.contains("workload del"), "{err}");
    assert!(
        std::path::Path::new("/run/netns").join(&node).exists(),
        "the refused node is still there"
    );
    ok(bulkhead(&[
        "workload", "del", "shop/a", "--node", &node, "--dir", dir_s,
    ]));
    ok(bulkhead(&["node", "del", &node]));
    drop(cleanup);
    let left = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["netns", "list"])
            .output()
            .expect("ip")
            .stdout,
    )
    .into_owned();
    assert!(!left.contains(&format!("bh-cli-{pid}")), "{left}");
}

#[test]
fn two_nodes_linked_from_the_cli_route_their_workloads() {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !root || Command::new("ping").arg("-V").output().is_err() {
        eprintln!("skipped: needs root and ping");
        return;
    }
    let pid = std::process::id();
    let (n1, n2) = (format!("bh-lnk-{pid}-a"), format!("bh-lnk-{pid}-b"));
    let dir = std::env::temp_dir().join(format!("bulkhead-lnk-{pid}-res"));
    let _cleanup = Cleanup {
        netns: vec![
            n1.clone(),
            n2.clone(),
            format!("{n1}-shop-a"),
            format!("{n2}-shop-b"),
        ],
        dirs: vec![dir.clone()],
        agent: None,
    };
    let dir_s = dir.to_str().expect("utf-8");
    ok(bulkhead(&["node", "add", &n1]));
    ok(bulkhead(&["node", "add", &n2]));
    for (id, node, ip) in [("shop/a", &n1, "10.65.31.1"), ("shop/b", &n2, "10.65.32.1")] {
        ok(bulkhead(&[
            "workload", "add", id, "--node", node, "--ip", ip, "--dir", dir_s,
        ]));
    }
    assert!(
        !ping(&format!("{n1}-shop-a"), "10.65.32.1"),
        "not linked yet"
    );
    let out = ok(bulkhead(&[
        "node",
        "link",
        &n1,
        &n2,
        "--net",
        "10.66.254.0/30",
        "--a-routes",
        "10.65.32.0/24",
        "--b-routes",
        "10.65.31.0/24",
    ]));
    assert!(out.starts_with(&format!("linked {n1} (lnk")), "{out}");
    assert!(
        ping(&format!("{n1}-shop-a"), "10.65.32.1"),
        "a reaches b: {out}"
    );
    assert!(ping(&format!("{n2}-shop-b"), "10.65.31.1"), "b reaches a");

    // Bad requests say what is wrong and change nothing.
    let refused = |args: &[&str], why: &str| {
        let o = bulkhead(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(why), "{args:?}: {err}");
    };
    let link = ["node", "link", &n1, &n2, "--net"];
    refused(&[&link[..], &["10.66.254.0/30"]].concat(), "already linked");
    refused(&[&link[..], &["10.66.253.0/31"]].concat(), "/30 or wider");
    refused(&[&link[..], &["fd00::/64"]].concat(), "IPv4 only");
    refused(
        &[
            "node",
            "link",
            &n1,
            "bh-no-such-node",
            "--net",
            "10.66.253.0/30",
        ],
        "no node namespace bh-no-such-node",
    );
    // The link is not a workload: with the workloads gone, a node goes without --force,
    // and takes the link with it.
    for (id, node) in [("shop/a", &n1), ("shop/b", &n2)] {
        ok(bulkhead(&[
            "workload", "del", id, "--node", node, "--dir", dir_s,
        ]));
    }
    ok(bulkhead(&["node", "del", &n1]));
    // The kernel tears a deleted namespace down in the background.
    wait_for("the link's other end to go", || {
        Command::new("ip")
            .args(["-n", &n2, "-o", "link", "show", "type", "veth"])
            .output()
            .is_ok_and(|o| o.status.success() && o.stdout.is_empty())
    });
    ok(bulkhead(&["node", "del", &n2]));
}
