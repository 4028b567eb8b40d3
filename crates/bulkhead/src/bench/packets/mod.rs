//! Cost per packet: TCP connection rate and throughput between two workloads on one node,
//! with N policies in the cluster and a large selector set in the server's rules, against
//! the same pair with no firewall at all, measured in the same run.
//!
//! The cluster has `N` policies spread over 1,000 applications, so the number that select
//! the server stays small however large `N` grows (the realistic case Calico's per-endpoint
//! chains are built for). One of the server's policies matches sources by a selector over
//! `members` remote endpoints (non-contiguous /32s, so nothing aggregates: the set holds
//! every one). The adversarial case, every policy selecting the server, is reported separately
//! with `--all-select-server`.
//!
//! Method (what makes the connection rate repeatable):
//!
//! - Every round builds a brand-new test bed (node, client and server namespaces) for each
//!   of the three variants (no firewall, conntrack only, the rendered table) and deletes
//!   them afterwards, so no socket, TIME_WAIT, conntrack or neighbour state carries from
//!   one variant to another or from one round to the next. Within a round the variants
//!   take turns in 250 ms slices (rotating order), so the background load of a shared
//!   machine hits all three alike. Medians over rounds are reported with every round's
//!   value, and ratios are taken per round.
//! - The server closes first (accept, then close): TIME_WAIT lands on the server, so the
//!   client never runs short of ephemeral ports; the client waits for the server's FIN,
//!   so a counted connection is a complete open-and-close. Several threads block in
//!   `accept` on the same listener; nothing in the server grows with history.
//! - Before each measurement the path is checked (the service answers; a closed port is
//!   refused without a firewall and silently dropped by the policy table, so the table
//!   really is in the path), and after it the kernel's own counters say whether anything
//!   was lost (SYN retransmissions at the client, listen-queue drops at the server,
//!   failed connects): a sound measurement loses nothing.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod stats;
mod traffic;

use anyhow::Context;
use bulkhead_api::Resource;
use bulkhead_dataplane::{
    CommandRunner, Dataplane, LocalEndpoint, RenderConfig, Table, Tagging, render,
};
use bulkhead_engine::Cluster;
use bulkhead_netns::{Endpoint, NodeSandbox, Outcome, Probe, host_ifname, unique_name};

pub use stats::{Point, Round, Sample, Spread, Variant};
use traffic::{Servers, connection_rate, delta, tcp_counters, throughput};

const CONNECT_PORT: u16 = 8080;
const SINK_PORT: u16 = 8081;
/// Nothing listens here: refused without a firewall, dropped by the policy table.
const CLOSED_PORT: u16 = 7;
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 65, 0, 1);
const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 65, 0, 2);
/// Upper bounds that keep every loop finite whatever the clock does.
const MAX_CONNECTIONS_PER_THREAD: u64 = 10_000_000;
const MAX_CHUNKS: u64 = 100_000_000;
/// Warm-up before each connection-rate measurement (neighbour entries, caches).
const WARM_UP: Duration = Duration::from_millis(300);
/// Length of one measurement slice; the variants take turns slice by slice.
const SLICE: Duration = Duration::from_millis(250);
/// Pause after a sandbox is deleted: the kernel tears namespaces down asynchronously.
const SETTLE: Duration = Duration::from_millis(700);

/// The "conntrack only" table: a stateful forward hook that accepts everything, i.e. the
/// cost every stateful firewall pays before any rule of ours.
const CONNTRACK_ONLY: &str = "table inet bench_ct {\n  chain forward {\n    type filter hook forward priority filter; policy accept;\n    ct state established,related accept\n    ct state invalid drop\n  }\n}\n";

/// How to measure.
#[derive(Debug, Clone)]
pub struct Options {
    /// Remote endpoints in the server's selector set.
    pub members: usize,
    /// Seconds per phase (connection rate, then throughput) of each measurement.
    pub seconds: f64,
    /// Rounds per configuration.
    pub rounds: usize,
    /// Client threads opening connections (and as many server threads accepting).
    pub clients: usize,
    /// Every policy selects the server.
    pub all_select_server: bool,
    /// NFLOG tags in the policy table.
    pub tagging: Tagging,
    /// Write each point's table (`nft -f` script) here, to see what a new connection walks.
    pub dump_tables: Option<std::path::PathBuf>,
}

/// The resources of the scenario: the two local workloads (`(node-side interface,
/// address)`), `members` remote endpoints, `policies` policies.
pub fn scenario(
    client: (&str, Ipv4Addr),
    server: (&str, Ipv4Addr),
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
    docs.push_str(&wep("client", "client", "bench", client.0, client.1));
    docs.push_str(&wep("server", "server", "bench", server.0, server.1));
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

/// The service answers, and a closed port is refused without a firewall but dropped by
/// the policy table: the table really is in the forward path.
fn check_path(client: &Endpoint, variant: Variant) -> anyhow::Result<()> {
    let target = IpAddr::V4(SERVER_IP);
    let open = bulkhead_netns::probe(
        &Probe::tcp(client.netns(), target, CONNECT_PORT).with_timeout(Duration::from_secs(1)),
    );
    anyhow::ensure!(
        open == Outcome::Reached,
        "{}: the server does not answer on {CONNECT_PORT}: {open:?}",
        variant.label()
    );
    let closed = bulkhead_netns::probe(
        &Probe::tcp(client.netns(), target, CLOSED_PORT).with_timeout(Duration::from_millis(300)),
    );
    let expected = match variant {
        Variant::Policy => Outcome::TimedOut,
        Variant::NoFirewall | Variant::Conntrack => Outcome::Refused,
    };
    anyhow::ensure!(
        closed == expected,
        "{}: port {CLOSED_PORT} gave {closed:?}, expected {expected:?}",
        variant.label()
    );
    Ok(())
}

/// One variant's test bed: a node sandbox of its own with a client and a server, and the
/// variant's table in the node. Fields drop in order: the servers, then the workload
/// namespaces, then the node (also when building it fails half-way).
struct Bed {
    variant: Variant,
    _servers: Servers,
    server: Endpoint,
    client: Endpoint,
    _node: NodeSandbox,
}

impl Bed {
    fn new(
        variant: Variant,
        table: &Table,
        options: &Options,
        deadline: Instant,
    ) -> anyhow::Result<Bed> {
        let node = NodeSandbox::new(&unique_name("pkt"))?;
        let client = node.add_workload("client", CLIENT_IP, None)?;
        let server = node.add_workload("server", SERVER_IP, None)?;
        client
            .netns()
            .sysctl(&[("net.ipv4.ip_local_port_range", "1024 65000")])?;
        match variant {
            Variant::NoFirewall => {}
            Variant::Conntrack => bulkhead_netns::nft::apply(node.netns(), CONNTRACK_ONLY)?,
            Variant::Policy => {
                Dataplane::new(CommandRunner::in_netns(node.name()))
                    .apply(table.clone())
                    .context("programming the table")?;
            }
        }
        let servers = Servers::start(&server, options.clients, deadline)?;
        Ok(Bed {
            variant,
            _servers: servers,
            server,
            client,
            _node: node,
        })
    }
}

/// One round: a fresh test bed per variant, measured in short alternating slices (so a
/// change in the machine's background load hits every variant alike), then deleted.
fn measure_round(
    order: [Variant; 3],
    table: &Table,
    options: &Options,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<[Sample; 3]> {
    let slices = ((options.seconds / SLICE.as_secs_f64()).round() as usize).max(1);
    let deadline = Instant::now()
        + Duration::from_secs(120)
        + (SLICE * slices as u32 + WARM_UP) * 2 * order.len() as u32;
    let mut beds = Vec::new();
    for variant in order {
        beds.push(Bed::new(variant, table, options, deadline)?);
    }
    for bed in &beds {
        check_path(&bed.client, bed.variant)?;
        connection_rate(&bed.client, options.clients, WARM_UP, stop)?;
    }
    let mut before = Vec::new();
    for bed in &beds {
        before.push((
            tcp_counters(bed.client.netns())?,
            tcp_counters(bed.server.netns())?,
        ));
    }
    let n = beds.len();
    let mut connections = vec![(0u64, 0u64, Duration::ZERO); n];
    for slice in 0..slices {
        for k in 0..n {
            let i = (slice + k) % n;
            anyhow::ensure!(!stop.load(Ordering::Relaxed), "interrupted");
            let (ok, failed, elapsed) =
                connection_rate(&beds[i].client, options.clients, SLICE, stop)?;
            connections[i].0 += ok;
            connections[i].1 += failed;
            connections[i].2 += elapsed;
        }
    }
    let mut after = Vec::new();
    for bed in &beds {
        after.push((
            tcp_counters(bed.client.netns())?,
            tcp_counters(bed.server.netns())?,
        ));
    }
    let mut bytes = vec![(0u64, Duration::ZERO); n];
    for slice in 0..slices {
        for k in 0..n {
            let i = (slice + k) % n;
            anyhow::ensure!(!stop.load(Ordering::Relaxed), "interrupted");
            let (sent, elapsed) = throughput(&beds[i].client, SLICE, stop)?;
            bytes[i].0 += sent;
            bytes[i].1 += elapsed;
        }
    }
    let mut samples = [Sample::default(); 3];
    for (i, bed) in beds.iter().enumerate() {
        samples[bed.variant.index()] = Sample {
            connections: connections[i].0 as f64 / connections[i].2.as_secs_f64(),
            throughput: bytes[i].0 as f64 / bytes[i].1.as_secs_f64(),
            failed: connections[i].1,
            syn_retrans: delta(&before[i].0, &after[i].0, "TcpExt.TCPSynRetrans"),
            listen_drops: delta(&before[i].1, &after[i].1, "TcpExt.ListenDrops"),
        };
    }
    drop(beds);
    Ok(samples)
}

/// Runs every configuration: `options.rounds` rounds of [`measure_round`], each with
/// fresh test beds, the variants' order rotating from round to round.
pub fn run(
    policy_counts: &[usize],
    options: &Options,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<Vec<Point>> {
    let client_if = host_ifname(bulkhead_netns::EndpointKind::Workload, "client");
    let server_if = host_ifname(bulkhead_netns::EndpointKind::Workload, "server");
    let mut points = Vec::new();
    for &n in policy_counts {
        let resources = scenario(
            (&client_if, CLIENT_IP),
            (&server_if, SERVER_IP),
            n,
            options.members,
            options.all_select_server,
        )?;
        let cluster = Cluster::build(&resources)?;
        let local: Vec<LocalEndpoint> = [("client", &client_if), ("server", &server_if)]
            .into_iter()
            .map(|(name, interface)| LocalEndpoint::workload("bench", name, interface))
            .collect();
        let table = render(
            &cluster,
            &local,
            &RenderConfig {
                workload_prefix: "cali".into(),
                tagging: options.tagging,
                ..RenderConfig::default()
            },
        );
        drop(cluster);
        let (rules, elements) = (table.rule_count(), table.element_count());
        if let Some(dir) = &options.dump_tables {
            let file = dir.join(format!(
                "packets-{n}{}.nft",
                if options.all_select_server {
                    "-all"
                } else {
                    ""
                }
            ));
            std::fs::write(&file, table.load_script())
                .with_context(|| format!("writing {}", file.display()))?;
        }
        let mut rounds = Vec::new();
        for r in 0..options.rounds {
            let mut order = Variant::ALL;
            order.rotate_left(r % Variant::ALL.len());
            let samples = measure_round(order, &table, options, stop)?;
            for variant in order {
                let sample = samples[variant.index()];
                eprintln!(
                    "policies {n:>6} round {r}: {:<6} {:>7.0} conn/s {:>6.0} MB/s  failed {} syn-retrans {} listen-drops {}",
                    variant.label(),
                    sample.connections,
                    sample.throughput / 1e6,
                    sample.failed,
                    sample.syn_retrans,
                    sample.listen_drops
                );
            }
            std::thread::sleep(SETTLE);
            rounds.push(Round { order, samples });
        }
        let point = Point {
            policies: n,
            rules,
            elements,
            rounds,
        };
        let (base, with) = (
            point.connections(Variant::NoFirewall),
            point.connections(Variant::Policy),
        );
        eprintln!(
            "policies {n:>6}: rules {rules:>6}, set elements {elements:>7}: {:.0} -> {:.0} conn/s ({:.2}); no-firewall rounds {:.0}..{:.0} (range {:.0}% of the median)",
            base.median,
            with.median,
            with.median / base.median,
            base.min,
            base.max,
            base.relative_range() * 100.0
        );
        points.push(point);
    }
    Ok(points)
}
