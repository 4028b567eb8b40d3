//! `bulkhead server` killed with SIGKILL (by PID) while four threads apply policies and a
//! watcher follows them, five times over: afterwards every acknowledged write is in the
//! store and in the audit log, every store revision (also of writes committed but never
//! acknowledged) has an audit record, the watcher saw every revision exactly once across its
//! reconnects, and `bulkhead audit verify` passes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bulkhead_server::client::Client;
use serde_json::{Value, json};

const GNPS: &str = "/apis/projectcalico.org/v3/globalnetworkpolicies";
const KILLS: usize = 5;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_bulkhead")
}

struct Server {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
}

impl Server {
    fn start(dir: &Path) -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let mut s = Server {
            child: None,
            dir: dir.to_path_buf(),
            port,
        };
        s.spawn();
        s
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .expect("log");
        let child = Command::new(bin())
            .args([
                "server",
                "--listen",
                &format!("127.0.0.1:{}", self.port),
                "--bookmark-seconds",
                "1",
                "--data-dir",
            ])
            .arg(self.dir.join("data"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn bulkhead server");
        self.child = Some(child);
        let probe = Client::new(&self.url(), None).expect("client");
        let started = Instant::now();
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("bulkhead server exited with {status}: {}", self.log());
            }
            if probe.get("/healthz").is_ok_and(|r| r.status == 200) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL by PID (`Child::kill`), then reap.
    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("reap");
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    fn token(&self) -> String {
        std::fs::read_to_string(self.dir.join("data/admin.token"))
            .expect("admin token")
            .trim()
            .to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The two tests each run a server; run them one at a time so the kill loop's timing does
/// not depend on the other test's load (two cores).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn rv(doc: &Value) -> u64 {
    doc["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no resourceVersion in {doc}"))
}

fn policy(name: &str, round: u64) -> Value {
    json!({
        "apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
        "metadata": {"name": name, "labels": {"round": round.to_string()}},
        "spec": {"selector": "all()", "ingress": [{"action": "Allow"}]},
    })
}

#[test]
fn acknowledged_writes_and_watches_survive_kill_9() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::env::temp_dir().join(format!("bulkhead-kill9-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut server = Server::start(&dir);
    let client = Client::new(&server.url(), Some(&server.token())).expect("client");
    // The watcher starts from a real revision: from 0 a watch begins with the current
    // objects as ADDED events in key order (as in Kubernetes), and writers that got in
    // before its first connect would show up out of revision order.
    let seed = client
        .send_json("PUT", &format!("{GNPS}/seed"), &policy("seed", 0))
        .expect("seed written");
    let start = rv(&seed.json().expect("json"));
    assert!(start > 0, "the seed has a revision");

    let stop_writers = AtomicBool::new(false);
    let writers_done = AtomicBool::new(false);
    // name → (revision, round) of the last acknowledged write.
    let acked: Mutex<BTreeMap<String, (u64, u64)>> = Mutex::new(BTreeMap::new());
    let acked_revisions: Mutex<BTreeSet<u64>> = Mutex::new(BTreeSet::new());

    let (seen, reconnects) = std::thread::scope(|s| {
        let mut writers = Vec::new();
        for w in 0..4 {
            let (client, acked, acked_revisions, stop) =
                (&client, &acked, &acked_revisions, &stop_writers);
            writers.push(s.spawn(move || {
                let mut round = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    round += 1;
                    // New policies, and updates of a few hot ones.
                    let name = if round.is_multiple_of(3) {
                        format!("hot-{}", round % 5)
                    } else {
                        format!("w{w}-{round}")
                    };
                    let path = format!("{GNPS}/{name}");
                    match client.send_json("PUT", &path, &policy(&name, round)) {
                        Ok(r) if r.status == 200 || r.status == 201 => {
                            let revision = rv(&r.json().expect("json"));
                            acked_revisions.lock().expect("lock").insert(revision);
                            let mut a = acked.lock().expect("lock");
                            let e = a.entry(name).or_insert((0, 0));
                            if revision > e.0 {
                                *e = (revision, round);
                            }
                        }
                        // The server is down or died mid-request: the outcome is unknown.
                        _ => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            }));
        }
        let watcher = {
            let (client, done) = (&client, &writers_done);
            s.spawn(move || {
                let mut last = start;
                let mut seen = Vec::new();
                let mut reconnects = 0;
                let mut end = None;
                loop {
                    if end.is_none() && done.load(Ordering::SeqCst) {
                        match client.get(GNPS) {
                            Ok(r) if r.status == 200 => end = Some(rv(&r.json().expect("json"))),
                            _ => {}
                        }
                    }
                    if end.is_some_and(|e| last >= e) {
                        return (seen, reconnects);
                    }
                    let path =
                        format!("{GNPS}?watch=1&resourceVersion={last}&allowWatchBookmarks=true");
                    let Ok(events) = client.watch(&path, Some(Duration::from_secs(5))) else {
                        reconnects += 1;
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    };
                    for event in events {
                        let Ok(event) = event else { break };
                        assert_ne!(event["type"], "ERROR", "{event}");
                        last = rv(&event["object"]);
                        if event["type"] != "BOOKMARK" {
                            seen.push(last);
                        }
                        if end.is_some_and(|e| last >= e)
                            || (end.is_none() && done.load(Ordering::SeqCst))
                        {
                            break;
                        }
                    }
                    reconnects += 1;
                }
            })
        };

        for k in 0..KILLS {
            std::thread::sleep(Duration::from_millis(300 + 97 * k as u64));
            server.kill9();
            std::thread::sleep(Duration::from_millis(50));
            server.spawn();
        }
        std::thread::sleep(Duration::from_millis(300));
        stop_writers.store(true, Ordering::SeqCst);
        for writer in writers {
            writer.join().expect("writer");
        }
        writers_done.store(true, Ordering::SeqCst);
        watcher.join().expect("watcher")
    });

    let acked = acked.into_inner().expect("lock");
    let acked_revisions = acked_revisions.into_inner().expect("lock");
    assert!(
        acked.len() > 20,
        "too few writes were acknowledged: {}",
        acked.len()
    );

    // 1. Every acknowledged write is in the store (or a later write of the same name).
    let list = client.get(GNPS).expect("list").json().expect("json");
    let stored: BTreeMap<String, (u64, String)> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            let name = i["metadata"]["name"].as_str().expect("name").to_string();
            let round = i["metadata"]["labels"]["round"]
                .as_str()
                .unwrap_or("")
                .to_string();
            (name, (rv(i), round))
        })
        .collect();
    for (name, (revision, round)) in &acked {
        let (now, now_round) = stored
            .get(name)
            .unwrap_or_else(|| panic!("acknowledged {name} is lost"));
        assert!(
            now >= revision,
            "{name}: stored {now} is older than acknowledged {revision}"
        );
        if now == revision {
            assert_eq!(now_round, &round.to_string());
        }
    }

    // 2. The watcher saw every revision exactly once, in order, across its reconnects:
    //    only these writers changed the store, and each write is one revision.
    let end = rv(&list);
    let expected: Vec<u64> = (start + 1..=end).collect();
    assert_eq!(
        seen, expected,
        "gaps or repeats over {reconnects} reconnects"
    );
    assert!(
        acked_revisions
            .iter()
            .all(|r| seen.binary_search(r).is_ok())
    );
    eprintln!(
        "{KILLS} kills: {} writes acknowledged ({} names), {} revisions watched over {reconnects} reconnects",
        acked_revisions.len(),
        acked.len(),
        seen.len()
    );

    // 3. Every acknowledged write is audited, and the chain verifies.
    let log = std::fs::read_to_string(dir.join("data/audit.log")).expect("audit log");
    let audited: BTreeSet<u64> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["type"] == "change")
        .filter_map(|r| r["revision"].as_u64())
        .collect();
    let missing: Vec<_> = acked_revisions.difference(&audited).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not audited: {missing:?}"
    );
    // Changes committed but never acknowledged (the server died before answering) are
    // recorded at the next start, so the log covers every revision: the last start recovered
    // everything before it, and nothing was killed after it.
    let unaudited: Vec<_> = (start + 1..=end).filter(|r| !audited.contains(r)).collect();
    assert!(
        unaudited.is_empty(),
        "store revisions without an audit record: {unaudited:?}"
    );
    let verify = Command::new(bin())
        .args(["audit", "verify", "--data-dir"])
        .arg(dir.join("data"))
        .output()
        .expect("audit verify");
    assert!(
        verify.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn audit_verify_and_list_from_the_command_line() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::env::temp_dir().join(format!("bulkhead-audit-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let server = Server::start(&dir);
    let client = Client::new(&server.url(), Some(&server.token())).expect("client");
    for name in ["a", "b"] {
        let r = client
            .send_json("PUT", &format!("{GNPS}/{name}"), &policy(name, 1))
            .expect("put");
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let list = Command::new(bin())
        .args(["audit", "list", "--kind", "GlobalNetworkPolicy"])
        .env("BULKHEAD_SERVER", server.url())
        .env("BULKHEAD_TOKEN", server.token())
        .output()
        .expect("audit list");
    let out = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("TIME") && lines[0].contains("OUTCOME"),
        "{out}"
    );
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[1].contains("GlobalNetworkPolicy/a") && lines[1].contains("created"),
        "{out}"
    );

    let verify = |data: &Path| {
        Command::new(bin())
            .args(["audit", "verify", "--data-dir"])
            .arg(data)
            .output()
            .expect("audit verify")
    };
    let ok = verify(&dir.join("data"));
    assert!(ok.status.success());
    assert!(String::from_utf8_lossy(&ok.stdout).contains("2 records, chain intact"));
    // Remove the last record: verify exits 1 and names the line.
    let log = dir.join("data/audit.log");
    let text = std::fs::read_to_string(&log).expect("log");
    let first = text.lines().next().expect("a record");
    std::fs::write(&log, format!("{first}\n")).expect("write");
    let bad = verify(&dir.join("data"));
    assert_eq!(bad.status.code(), Some(1));
    let out = String::from_utf8_lossy(&bad.stdout);
    assert!(
        out.contains("line 2") && out.contains("removed from the end"),
        "{out}"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
