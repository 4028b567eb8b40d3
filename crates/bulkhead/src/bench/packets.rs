//! Cost per packet: TCP connection rate and throughput between two workloads on one node,
//! with N policies in the cluster and a large selector set in the server's rules, against
//! the same pair with no firewall at all, measured in the same run.
//!
//! The cluster has `N` policies spread over 1,000 applications, so the number that select
//! the server stays small however large `N` grows (the realistic case Calico's per-endpoint
//! chains are built for). One of the server's policies matches sources by a selector over
//! `members` remote endpoints (non-contiguous /32s, so the interval set really holds them
//! all). The adversarial case, every policy selecting the server, is reported separately
//! with `--all-select-server`.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bulkhead_api::Resource;
use bulkhead_dataplane::{CommandRunner, Dataplane, LocalEndpoint, RenderConfig, render};
use bulkhead_engine::{Cluster, EndpointKind};
use bulkhead_netns::{Endpoint, NodeSandbox, unique_name};

/// One measurement.
#[derive(Debug, Clone, Copy)]
pub struct Rates {
    /// New TCP connections per second.
    pub connections: f64,
    /// Bulk throughput, bytes per second.
    pub throughput: f64,
}

const CONNECT_PORT: u16 = 8080;
const SINK_PORT: u16 = 8081;

/// The resources of the scenario: the two local workloads, `members` remote endpoints,
/// `policies` policies.
pub fn scenario(
    client: &Endpoint,
    server: &Endpoint,
    policies: usize,
    members: usize,
    all_select_server: bool,
) -> anyhow::Result<Vec<Resource>> {
    let mut docs = String::new();
    let wep = |name: &str, app: &str, node: &str, iface: &str, ip: Ipv4Addr| {
        let iface = if iface.is_empty() {
            String::new()
        } else {
            format!("interfaceName: {iface}, ")
        };
        format!(
            "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {{name: {name}, namespace: bench, labels: {{app: {app}}}}}\nspec: {{node: {node}, {iface}ipNetworks: [{ip}/32]}}\n---\n"
        )
    };
    docs.push_str(&wep(
        "client",
        "client",
        "bench",
        client.host_ifname(),
        client.ipv4(),
    ));
    docs.push_str(&wep(
        "server",
        "server",
        "bench",
        server.host_ifname(),
        server.ipv4(),
    ));
    for i in 0..members {
        // 10.100.0.0/14, every other address: nothing aggregates.
        let n = (i as u32) * 2 + 1;
        let ip = Ipv4Addr::new(10, 100 + (n >> 16) as u8, (n >> 8) as u8, n as u8);
        docs.push_str(&wep(
            &format!("r{i}"),
            &format!("app{}", i % 1000),
            "remote",
            "",
            ip,
        ));
    }
    let selects_server = |p: usize| all_select_server || p.is_multiple_of(1000);
    // Only the last policy that selects the server allows the benchmark's ports, so a new
    // connection walks every policy that selects the server before it is accepted.
    let last = (0..policies).rev().find(|&p| selects_server(p));
    for p in 0..policies {
        let selects = if selects_server(p) {
            "server".to_string()
        } else {
            format!("app{}", p % 1000)
        };
        let ports = if Some(p) == last {
            format!("{CONNECT_PORT}, {SINK_PORT}")
        } else {
            "9998".into()
        };
        docs.push_str(&format!(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: p{p}}}\nspec:\n  order: {p}\n  selector: app == '{selects}'\n  types: [Ingress]\n  ingress:\n    - {{action: Deny, protocol: TCP, source: {{selector: app == 'app{}'}}, destination: {{ports: [9999]}}}}\n    - {{action: Allow, protocol: TCP, source: {{selector: has(app)}}, destination: {{ports: [{ports}]}}}}\n---\n",
            (p + 7) % 1000
        ));
    }
    bulkhead_api::load_str("bench.yaml", &docs)
        .map(|l| l.into_iter().map(|l| l.resource).collect())
        .map_err(|e| anyhow::anyhow!("the generated scenario does not load: {e}"))
}

/// Servers in `server`'s namespace: accept-and-close on 8080, a sink on 8081. They stop
/// when `stop` is set.
fn start_servers(
    server: &Endpoint,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<Vec<std::thread::JoinHandle<()>>> {
    let mut handles = Vec::new();
    for port in [CONNECT_PORT, SINK_PORT] {
        let stop = Arc::clone(stop);
        let listener = server
            .netns()
            .run_in(move || TcpListener::bind(("0.0.0.0", port)))
            .context("entering the server namespace")??;
        listener.set_nonblocking(true)?;
        handles.push(std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            // Accepted connections stay open until the client closes them, so TIME_WAIT
            // is on the client's side only (as in real request/response traffic).
            let mut open: Vec<TcpStream> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let mut idle = true;
                while let Ok((s, _)) = listener.accept() {
                    idle = false;
                    if port == SINK_PORT {
                        let mut s = s;
                        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                        while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
                    } else if s.set_nonblocking(true).is_ok() {
                        open.push(s);
                    }
                }
                open.retain_mut(|s| matches!(s.read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock));
                if idle {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }));
    }
    Ok(handles)
}

/// Measures connection rate (several client threads for `seconds`) and throughput (one
/// connection for `seconds`) from `client` to `server`.
fn measure(client: &Endpoint, server: &Endpoint, seconds: f64) -> anyhow::Result<Rates> {
    let target: IpAddr = server.ipv4().into();
    let count = Arc::new(AtomicU64::new(0));
    let span = Duration::from_secs_f64(seconds);
    let mut threads = Vec::new();
    for _ in 0..4 {
        let count = Arc::clone(&count);
        threads.push(client.netns().spawn_thread("connect", move || {
            let end = Instant::now() + span;
            let addr = SocketAddr::new(target, CONNECT_PORT);
            while Instant::now() < end {
                if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
        })?);
    }
    for t in threads {
        let _ = t.join();
    }
    let connections = count.load(Ordering::Relaxed) as f64 / seconds;
    let bytes = client
        .netns()
        .run_in(move || -> std::io::Result<u64> {
            let mut s = TcpStream::connect_timeout(
                &SocketAddr::new(target, SINK_PORT),
                Duration::from_secs(1),
            )?;
            let chunk = vec![0u8; 1 << 16];
            let end = Instant::now() + span;
            let mut sent = 0u64;
            while Instant::now() < end {
                s.write_all(&chunk)?;
                sent += chunk.len() as u64;
            }
            Ok(sent)
        })
        .context("entering the client namespace")??;
    Ok(Rates {
        connections,
        throughput: bytes as f64 / seconds,
    })
}

fn median(samples: &[Rates]) -> Rates {
    let pick = |f: fn(&Rates) -> f64| {
        let mut v: Vec<f64> = samples.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    Rates {
        connections: pick(|r| r.connections),
        throughput: pick(|r| r.throughput),
    }
}

/// One configuration's result.
#[derive(Debug, Clone, Copy)]
pub struct Point {
    /// Policies in the cluster.
    pub policies: usize,
    /// Rules in the node's table.
    pub rules: usize,
    /// Elements in the node's sets.
    pub elements: usize,
    /// Without any firewall, this run.
    pub baseline: Rates,
    /// With the table programmed.
    pub with_policy: Rates,
}

/// Runs every configuration in its own node sandbox; baseline and policy alternate in
/// the same sandbox so they see the same machine state.
pub fn run(
    policy_counts: &[usize],
    members: usize,
    seconds: f64,
    rounds: usize,
    all_select_server: bool,
) -> anyhow::Result<Vec<Point>> {
    let mut points = Vec::new();
    for &n in policy_counts {
        let node = NodeSandbox::new(&unique_name("bench"))?;
        let client = node.add_workload("client", Ipv4Addr::new(10, 65, 0, 1), None)?;
        let server = node.add_workload("server", Ipv4Addr::new(10, 65, 0, 2), None)?;
        // Thousands of short connections per second would otherwise exhaust the client's
        // ephemeral ports (TIME_WAIT), and the benchmark would measure that instead.
        client.netns().sysctl(&[
            ("net.ipv4.tcp_tw_reuse", "1"),
            ("net.ipv4.ip_local_port_range", "1024 65000"),
        ])?;
        let stop = Arc::new(AtomicBool::new(false));
        let servers = start_servers(&server, &stop)?;
        let resources = scenario(&client, &server, n, members, all_select_server)?;
        let cluster = Cluster::build(&resources)?;
        let local: Vec<LocalEndpoint> = ["client", "server"]
            .iter()
            .zip([&client, &server])
            .map(|(name, ep)| LocalEndpoint {
                kind: EndpointKind::Workload,
                namespace: Some("bench".into()),
                name: name.to_string(),
                interface: ep.host_ifname().to_string(),
            })
            .collect();
        let table = render(
            &cluster,
            &local,
            &RenderConfig {
                workload_prefix: "cali".into(),
            },
        );
        let (rules, elements) = (table.rule_count(), table.element_count());
        // Alternate no-firewall and policy measurements so both see the same machine
        // state over time, and keep the medians.
        let mut base = Vec::new();
        let mut with = Vec::new();
        for _ in 0..rounds {
            let _ = node
                .netns()
                .exec("nft", ["delete", "table", "inet", "bulkhead"]);
            base.push(measure(&client, &server, seconds)?);
            let mut dataplane = Dataplane::new(CommandRunner::in_netns(node.name()));
            dataplane.apply(table.clone())?;
            with.push(measure(&client, &server, seconds)?);
        }
        let baseline = median(&base);
        let with_policy = median(&with);
        stop.store(true, Ordering::Relaxed);
        for s in servers {
            let _ = s.join();
        }
        eprintln!(
            "policies {n:>6}: rules {rules:>6}, set elements {elements:>7}: {:.0} -> {:.0} conn/s ({:.2}), {:.0} -> {:.0} MB/s",
            baseline.connections,
            with_policy.connections,
            with_policy.connections / baseline.connections,
            baseline.throughput / 1e6,
            with_policy.throughput / 1e6
        );
        points.push(Point {
            policies: n,
            rules,
            elements,
            baseline,
            with_policy,
        });
    }
    Ok(points)
}
