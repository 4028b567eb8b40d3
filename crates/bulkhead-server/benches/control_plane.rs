//! Control-plane benchmark: apply throughput, watch fan-out latency, large lists, memory
//! per stored object. A plain `main` (not criterion): each figure is one long measurement,
//! not a micro-benchmark to repeat thousands of times.
//!
//! Run: `cargo bench -p bulkhead-server --bench control_plane`. The results are printed as a
//! Markdown section; with `BULKHEAD_PERF_MD=docs/perf.md` they are also appended to that
//! file. `BULKHEAD_BENCH_SCALE=0.1` shrinks every count (a smoke run).
//!
//! Everything runs on this machine in one process: the server (real HTTP on 127.0.0.1,
//! embedded store with fsync per write, audit log with group commit) and the clients
//! (blocking HTTP, one connection per request). Baselines in the same run: the store alone
//! (puts and lists without HTTP, validation or audit).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bulkhead_server::client::Client;
use bulkhead_server::{Server, ServerConfig};
use bulkhead_store::{AnyStore, EmbeddedOptions, EmbeddedStore, Expect, Store};
use serde_json::{Value, json};

const GNPS: &str = "/apis/projectcalico.org/v3/globalnetworkpolicies";
const CLIENTS: usize = 16;

fn scale(n: usize) -> usize {
    let s: f64 = std::env::var("BULKHEAD_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    ((n as f64 * s) as usize).max(1)
}

/// A realistic policy: a selector, two ingress rules with ports and nets, one egress rule.
fn policy(i: usize) -> Value {
    json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": format!("policy-{i:06}"), "labels": {"app": format!("app-{}", i % 100), "team": format!("t{}", i % 7)}},
        "spec": {
            "tier": "default",
            "order": (i % 1000) as f64,
            "selector": format!("app == 'app-{}'", i % 100),
            "ingress": [
                {"action": "Allow", "protocol": "TCP", "source": {"selector": "role == 'frontend'"}, "destination": {"ports": [80, 443]}},
                {"action": "Allow", "protocol": "TCP", "source": {"nets": ["10.0.0.0/8"]}, "destination": {"ports": [8080]}},
            ],
            "egress": [{"action": "Allow", "protocol": "UDP", "destination": {"ports": [53]}}],
        },
    })
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU seconds (user + system) this process has used.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line: indexes 11 and 12 after the state.
    (ticks(11) + ticks(12)) / 100.0
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// Creates policies `range` over HTTP from `CLIENTS` threads; returns (objects/s, p50 ms, p99 ms).
fn apply(client: &Client, range: std::ops::Range<usize>) -> (f64, f64, f64) {
    let next = AtomicUsize::new(range.start);
    let started = Instant::now();
    let mut latencies: Vec<f64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let (client, next, end) = (client, &next, range.end);
                s.spawn(move || {
                    let mut lat = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= end {
                            return lat;
                        }
                        let t = Instant::now();
                        let r = client.send_json("POST", GNPS, &policy(i)).expect("post");
                        assert_eq!(r.status, 201, "{}", r.text());
                        lat.push(t.elapsed().as_secs_f64() * 1e3);
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("client"))
            .collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    (
        range.len() as f64 / elapsed,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
    )
}

/// The store alone: the same documents, `CLIENTS` concurrent writers, no HTTP/validation/audit.
fn store_baseline(rt: &tokio::runtime::Runtime, n: usize) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).expect("open");
    let docs: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..n)
            .map(|i| serde_json::to_vec(&policy(i)).expect("encode"))
            .collect(),
    );
    let started = Instant::now();
    rt.block_on(async {
        let next = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let (store, next, docs) = (store.clone(), Arc::clone(&next), Arc::clone(&docs));
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= docs.len() {
                            return;
                        }
                        let key = format!(
                            "/registry/projectcalico.org/globalnetworkpolicies/policy-{i:06}"
                        );
                        store
                            .put(&key, docs[i].clone(), Expect::Absent)
                            .await
                            .expect("put");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("task");
        }
    });
    n as f64 / started.elapsed().as_secs_f64()
}

/// `watchers` watches on the policies; `changes` updates, each timed from just before the
/// write is sent to each watcher's receipt. Returns sorted latencies in ms.
fn fan_out(client: &Client, url: &str, watchers: usize, changes: usize) -> Vec<f64> {
    let from = {
        let list = client
            .get(&format!("{GNPS}?labelSelector=app%20%3D%3D%20%27none%27"))
            .expect("list");
        list.json().expect("json")["metadata"]["resourceVersion"]
            .as_str()
            .expect("rv")
            .to_string()
    };
    let sent: Arc<std::sync::Mutex<Vec<Instant>>> = Arc::new(std::sync::Mutex::new(Vec::new()));
    let ready = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..watchers)
        .map(|_| {
            let (client, sent, ready, from) = (
                client.clone(),
                Arc::clone(&sent),
                Arc::clone(&ready),
                from.clone(),
            );
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let path = format!("{GNPS}?watch=1&resourceVersion={from}");
                    let events = client
                        .watch(&path, Some(Duration::from_secs(60)))
                        .expect("watch");
                    ready.fetch_add(1, Ordering::SeqCst);
                    let mut lat = Vec::new();
                    for event in events {
                        let _ = event.expect("event");
                        let at = Instant::now();
                        let n = lat.len();
                        let t0 = loop {
                            if let Some(t) = sent.lock().expect("lock").get(n).copied() {
                                break t;
                            }
                            std::thread::yield_now();
                        };
                        lat.push(at.duration_since(t0).as_secs_f64() * 1e3);
                        if lat.len() == changes {
                            break;
                        }
                    }
                    lat
                })
                .expect("thread")
        })
        .collect();
    // Wait until every watch is open on the server side.
    let probe = Client::new(url, None).expect("client");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = probe.get("/metrics").expect("metrics").text();
        if ready.load(Ordering::SeqCst) == watchers
            && text.contains(&format!("bulkhead_server_watchers {watchers}\n"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "watchers did not connect");
        std::thread::sleep(Duration::from_millis(50));
    }
    for c in 0..changes {
        std::thread::sleep(Duration::from_millis(100));
        let mut doc = policy(0);
        doc["metadata"]["labels"]["change"] = c.to_string().into();
        sent.lock().expect("lock").push(Instant::now());
        let r = client
            .send_json("PUT", &format!("{GNPS}/policy-000000"), &doc)
            .expect("put");
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let mut all: Vec<f64> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("watcher"))
        .collect();
    all.sort_by(f64::total_cmp);
    all
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let n_apply = scale(10_000);
    let n_total = scale(100_000);
    let watchers = scale(500);
    let changes = 20;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut out = String::new();
    let mut line = |s: String| {
        println!("{s}");
        out.push_str(&s);
        out.push('\n');
    };

    eprintln!("baseline: store alone, {n_apply} puts");
    let store_rate = store_baseline(&rt, n_apply);

    let dir = tempfile::tempdir().expect("temp dir");
    let store_dir = dir.path().join("store");
    let store = EmbeddedStore::open(&store_dir, EmbeddedOptions::default()).expect("open");
    let store = AnyStore::from(store);
    let config = ServerConfig::new("127.0.0.1:0".parse().expect("addr"), dir.path());
    let server: Server = rt
        .block_on(Server::start_with_store(config, store.clone()))
        .expect("server");
    let url = server.url();
    let token = std::fs::read_to_string(server.admin_token_path()).expect("token");
    let client = Client::new(&url, Some(token.trim())).expect("client");
    std::thread::sleep(Duration::from_millis(200));
    let rss_empty = rss_kib();

    eprintln!("apply: {n_apply} policies over HTTP");
    let (cpu0, wall0) = (cpu_seconds(), Instant::now());
    let (rate, p50, p99) = apply(&client, 0..n_apply);
    let apply_cores = (cpu_seconds() - cpu0) / wall0.elapsed().as_secs_f64();
    // The disk is shared with whatever else runs: measure the store again right after, and
    // compare the server with the mean of the two.
    let store_after = store_baseline(&rt, n_apply);
    let rss_10k = rss_kib();

    eprintln!("watch fan-out: {watchers} watchers x {changes} changes");
    let lat = fan_out(&client, &url, watchers, changes);

    eprintln!("populate to {n_total}");
    let (rate_big, _, _) = apply(&client, n_apply..n_total);
    std::thread::sleep(Duration::from_millis(500));
    let rss_100k = rss_kib();
    let disk = dir_bytes(&store_dir);

    eprintln!("list {n_total}");
    let mut list_ms = Vec::new();
    let mut list_bytes = 0;
    for _ in 0..3 {
        let t = Instant::now();
        let r = client.get(GNPS).expect("list");
        list_ms.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(r.status, 200);
        list_bytes = r.body.len();
        let items = r.json().expect("json")["items"]
            .as_array()
            .map_or(0, Vec::len);
        assert_eq!(items, n_total);
    }
    list_ms.sort_by(f64::total_cmp);
    let rss_after_list = rss_kib();
    let mut sel_ms = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let r = client
            .get(&format!("{GNPS}?labelSelector=app%20%3D%3D%20%27app-7%27"))
            .expect("list");
        sel_ms.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(r.status, 200);
    }
    sel_ms.sort_by(f64::total_cmp);
    let mut raw_ms = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let (items, _) = rt
            .block_on(store.list("/registry/projectcalico.org/globalnetworkpolicies/"))
            .expect("list");
        raw_ms.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(items.len(), n_total);
    }
    raw_ms.sort_by(f64::total_cmp);

    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    line(String::new());
    line("## Control plane".into());
    line(String::new());
    line(format!(
        "`cargo bench -p bulkhead-server --bench control_plane` (release), {}; {} cores ({cpu}). \
Server and clients in one process: real HTTP/1.1 on 127.0.0.1 (one connection per request), \
embedded store (redb, fsync per write), audit log (group commit, fsync). {CLIENTS} client threads. \
Baseline in the same run: the store alone, same documents, {CLIENTS} concurrent writers.",
        humantime_now(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    ));
    line(String::new());
    line("| measurement | result | target |".into());
    line("|---|---|---|".into());
    line(format!(
        "| apply {n_apply} GlobalNetworkPolicies (POST, validated, audited) | **{rate:.0} objects/s**; latency p50 {p50:.1} ms, p99 {p99:.1} ms; {apply_cores:.2} cores busy (server and clients) | ≥ 2,000 objects/s |"
    ));
    let store_mean = (store_rate + store_after) / 2.0;
    line(format!(
        "| baseline: store puts alone (fsync per put), before and after | {store_rate:.0} and {store_after:.0} puts/s (server = {:.2} × their mean) | – |",
        rate / store_mean
    ));
    line(format!(
        "| apply {}..{n_total} (store growing to {n_total}) | {rate_big:.0} objects/s | – |",
        n_apply
    ));
    line(format!(
        "| one change → {watchers} watchers ({changes} changes, {} deliveries), from write sent to event received | p50 {:.1} ms, p99 **{:.1} ms**, max {:.1} ms | p99 ≤ 100 ms |",
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(f64::NAN)
    ));
    line(format!(
        "| list {n_total} policies (one response, {:.1} MiB) | median {:.0} ms | – |",
        list_bytes as f64 / (1 << 20) as f64,
        list_ms[1]
    ));
    line(format!(
        "| list with `labelSelector` (1% match) of {n_total} | median {:.0} ms | – |",
        sel_ms[1]
    ));
    line(format!(
        "| baseline: store list of {n_total} (no HTTP, no JSON) | median {:.0} ms | – |",
        raw_ms[1]
    ));
    line(format!(
        "| memory per stored object (process RSS growth {n_apply} → {n_total}) | {:.2} KiB/object; RSS {} MiB empty, {} MiB at {n_apply}, {} MiB at {n_total}, {} MiB after lists | – |",
        (rss_100k.saturating_sub(rss_10k)) as f64 / (n_total - n_apply) as f64,
        rss_empty / 1024,
        rss_10k / 1024,
        rss_100k / 1024,
        rss_after_list / 1024
    ));
    line(format!(
        "| disk per stored object (store file / objects, history of 10,000 revisions included) | {:.2} KiB/object ({} MiB) | – |",
        disk as f64 / 1024.0 / n_total as f64,
        disk >> 20
    ));
    line(String::new());
    if let Ok(path) = std::env::var("BULKHEAD_PERF_MD") {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("perf.md");
        f.write_all(out.as_bytes()).expect("append");
        eprintln!("appended to {path}");
    }
    rt.block_on(server.shutdown()).expect("shutdown");
}

/// Today's date (UTC), for the record.
fn humantime_now() -> String {
    bulkhead_server::util::rfc3339(std::time::SystemTime::now())[..10].to_string()
}
