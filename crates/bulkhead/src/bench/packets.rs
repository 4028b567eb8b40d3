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

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use bulkhead_api::Resource;
use bulkhead_dataplane::{CommandRunner, Dataplane, LocalEndpoint, RenderConfig, Table, render};
use bulkhead_engine::{Cluster, EndpointKind};
use bulkhead_netns::{Endpoint, Netns, NodeSandbox, Outcome, Probe, host_ifname, unique_name};

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

/// What is in the node's forward path during a measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// No table at all (and so no conntrack hooks in the node namespace).
    NoFirewall,
    /// Only `ct state established,related accept` in a forward chain.
    Conntrack,
    /// The rendered `inet bulkhead` table.
    Policy,
}

impl Variant {
    const ALL: [Variant; 3] = [Variant::NoFirewall, Variant::Conntrack, Variant::Policy];

    fn index(self) -> usize {
        self as usize
    }

    /// A short name for the per-round output.
    pub fn label(self) -> &'static str {
        match self {
            Variant::NoFirewall => "none",
            Variant::Conntrack => "ct",
            Variant::Policy => "policy",
        }
    }
}

/// One measurement.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// New TCP connections (open and close) per second.
    pub connections: f64,
    /// Bulk throughput, bytes per second.
    pub throughput: f64,
    /// Connects that failed or did not see the server's close within 1 s.
    pub failed: u64,
    /// SYN retransmissions at the client during the connection-rate phase.
    pub syn_retrans: u64,
    /// Listen-queue drops at the server during the connection-rate phase.
    pub listen_drops: u64,
}

impl Sample {
    /// Everything that says a connection was lost or delayed by a timeout.
    pub fn losses(&self) -> u64 {
        self.failed + self.syn_retrans + self.listen_drops
    }
}

/// One round: each variant once, in `order`.
#[derive(Debug, Clone)]
pub struct Round {
    /// The order the variants ran in.
    pub order: [Variant; 3],
    /// Indexed by [`Variant`] (no firewall, conntrack only, policy).
    pub samples: [Sample; 3],
}

impl Round {
    /// The sample of `variant`.
    pub fn sample(&self, variant: Variant) -> Sample {
        self.samples[variant.index()]
    }
}

/// One configuration's result.
#[derive(Debug, Clone)]
pub struct Point {
    /// Policies in the cluster.
    pub policies: usize,
    /// Rules in the node's table.
    pub rules: usize,
    /// Elements in the node's sets.
    pub elements: usize,
    /// Every round, in order.
    pub rounds: Vec<Round>,
}

/// Median, minimum and maximum of some values.
#[derive(Debug, Clone, Copy)]
pub struct Spread {
    /// The median (mean of the two middle values for an even count).
    pub median: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
}

impl Spread {
    fn of(mut values: Vec<f64>) -> Spread {
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let median = match n {
            0 => f64::NAN,
            _ if n % 2 == 1 => values[n / 2],
            _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
        };
        Spread {
            median,
            min: values.first().copied().unwrap_or(f64::NAN),
            max: values.last().copied().unwrap_or(f64::NAN),
        }
    }

    /// (max − min) / median: 0.4 means the rounds lie within about ±20%.
    pub fn relative_range(&self) -> f64 {
        (self.max - self.min) / self.median
    }
}

impl Point {
    /// Connection rates of `variant` over the rounds.
    pub fn connections(&self, variant: Variant) -> Spread {
        Spread::of(
            self.rounds
                .iter()
                .map(|r| r.sample(variant).connections)
                .collect(),
        )
    }

    /// Throughputs of `variant` over the rounds, bytes per second.
    pub fn throughput(&self, variant: Variant) -> Spread {
        Spread::of(
            self.rounds
                .iter()
                .map(|r| r.sample(variant).throughput)
                .collect(),
        )
    }

    /// Per-round ratio of `variant`'s connection rate to the no-firewall one of the same
    /// round.
    pub fn connection_ratios(&self, variant: Variant) -> Spread {
        self.connection_ratios_to(variant, Variant::NoFirewall)
    }

    /// Per-round connection-rate ratio of `variant` to `base` (policy to conntrack only
    /// tells the table's own cost from conntrack's).
    pub fn connection_ratios_to(&self, variant: Variant, base: Variant) -> Spread {
        Spread::of(
            self.rounds
                .iter()
                .map(|r| r.sample(variant).connections / r.sample(base).connections)
                .collect(),
        )
    }

    /// Per-round throughput ratio of `variant` to no firewall.
    pub fn throughput_ratios(&self, variant: Variant) -> Spread {
        Spread::of(
            self.rounds
                .iter()
                .map(|r| r.sample(variant).throughput / r.sample(Variant::NoFirewall).throughput)
                .collect(),
        )
    }

    /// Losses of `variant` over all rounds.
    pub fn losses(&self, variant: Variant) -> u64 {
        self.rounds.iter().map(|r| r.sample(variant).losses()).sum()
    }
}

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

/// The servers in the server's namespace: on [`CONNECT_PORT`] several threads accept and
/// close at once; on [`SINK_PORT`] one thread reads each connection to its end. Dropping
/// stops and joins them (within about a second: `accept` wakes every 100 ms, sink reads
/// time out after 1 s).
struct Servers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Servers {
    fn start(server: &Endpoint, acceptors: usize, deadline: Instant) -> anyhow::Result<Servers> {
        let mut servers = Servers {
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
        };
        for (port, threads) in [(CONNECT_PORT, acceptors.max(1)), (SINK_PORT, 1)] {
            let listener = server
                .netns()
                .run_in(move || listener(port))
                .context("entering the server namespace")?
                .with_context(|| format!("listening on port {port}"))?;
            let listener = Arc::new(listener);
            for _ in 0..threads {
                let listener = Arc::clone(&listener);
                let stop = Arc::clone(&servers.stop);
                let thread = std::thread::Builder::new()
                    .name(format!("bench-srv:{port}"))
                    .spawn(move || serve(&listener, port, &stop, deadline))
                    .context("spawning a server thread")?;
                servers.threads.push(thread);
            }
        }
        Ok(servers)
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// A listener whose `accept` returns `WouldBlock` after 100 ms without a connection
/// (`SO_RCVTIMEO` applies to `accept` on Linux), so its threads can see `stop`.
fn listener(port: u16) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))?;
    let as_stream = TcpStream::from(OwnedFd::from(listener));
    as_stream.set_read_timeout(Some(Duration::from_millis(100)))?;
    Ok(TcpListener::from(OwnedFd::from(as_stream)))
}

fn serve(listener: &TcpListener, port: u16, stop: &AtomicBool, deadline: Instant) {
    let mut buf = vec![0u8; 1 << 16];
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        match listener.accept() {
            // Close at once: the server closes first, so TIME_WAIT stays on this side.
            Ok((stream, _)) if port == CONNECT_PORT => drop(stream),
            Ok((mut stream, _)) => {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
                while matches!(stream.read(&mut buf), Ok(n) if n > 0) {
                    if stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
                        break;
                    }
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            // Out of descriptors or similar: do not spin.
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Opens connections from `clients` threads for `span`: connect, wait for the server's
/// close, close. Returns (completed connections, failures, elapsed time).
fn connection_rate(
    client: &Endpoint,
    clients: usize,
    span: Duration,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<(u64, u64, Duration)> {
    let addr = SocketAddr::new(IpAddr::V4(SERVER_IP), CONNECT_PORT);
    let mut starts = Vec::new();
    let mut threads = Vec::new();
    for _ in 0..clients.max(1) {
        let (go, wait) = mpsc::channel::<()>();
        let stop = Arc::clone(stop);
        threads.push(client.netns().spawn_thread("connect", move || {
            // If the caller gives up before the start, the channel closes and we end.
            if wait.recv().is_err() {
                return (0u64, 0u64);
            }
            let end = Instant::now() + span;
            let (mut ok, mut failed) = (0u64, 0u64);
            let mut buf = [0u8; 64];
            for _ in 0..MAX_CONNECTIONS_PER_THREAD {
                if Instant::now() >= end || stop.load(Ordering::Relaxed) {
                    break;
                }
                if open_and_close(&addr, &mut buf) {
                    ok += 1;
                } else {
                    failed += 1;
                }
            }
            (ok, failed)
        })?);
        starts.push(go);
    }
    let start = Instant::now();
    for go in &starts {
        let _ = go.send(());
    }
    let (mut ok, mut failed) = (0, 0);
    for thread in threads {
        let (o, f) = thread
            .join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))?;
        ok += o;
        failed += f;
    }
    Ok((ok, failed, start.elapsed()))
}

/// One connection: connect, read until the server's close, close.
fn open_and_close(addr: &SocketAddr, buf: &mut [u8]) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(addr, Duration::from_secs(1)) else {
        return false;
    };
    if stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .is_err()
    {
        return false;
    }
    matches!(stream.read(buf), Ok(0))
}

/// Bulk throughput over one connection for `span`, counted up to the server having read
/// everything (the client shuts down its side and waits for the server's close).
/// Returns (bytes, elapsed time).
fn throughput(
    client: &Endpoint,
    span: Duration,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<(u64, Duration)> {
    let stop = Arc::clone(stop);
    client
        .netns()
        .run_in(move || -> std::io::Result<(u64, Duration)> {
            let mut stream = TcpStream::connect_timeout(
                &SocketAddr::new(IpAddr::V4(SERVER_IP), SINK_PORT),
                Duration::from_secs(1),
            )?;
            stream.set_write_timeout(Some(Duration::from_secs(2)))?;
            stream.set_read_timeout(Some(Duration::from_secs(3)))?;
            let chunk = vec![0u8; 1 << 16];
            let start = Instant::now();
            let end = start + span;
            let mut sent = 0u64;
            for _ in 0..MAX_CHUNKS {
                if Instant::now() >= end || stop.load(Ordering::Relaxed) {
                    break;
                }
                stream.write_all(&chunk)?;
                sent += chunk.len() as u64;
            }
            stream.shutdown(Shutdown::Write)?;
            let mut byte = [0u8; 1];
            let _ = stream.read(&mut byte);
            Ok((sent, start.elapsed()))
        })
        .context("entering the client namespace")?
        .context("measuring throughput")
}

/// The namespace's TCP counters (`/proc/net/netstat` and `/proc/net/snmp` as the
/// namespace sees them), keyed `TcpExt.ListenDrops` etc.
fn tcp_counters(ns: &Netns) -> anyhow::Result<HashMap<String, i64>> {
    ns.run_in(|| -> std::io::Result<HashMap<String, i64>> {
        let mut counters = HashMap::new();
        for file in [
            "/proc/thread-self/net/netstat",
            "/proc/thread-self/net/snmp",
        ] {
            let text = std::fs::read_to_string(file)?;
            let lines: Vec<&str> = text.lines().collect();
            for pair in lines.chunks(2) {
                let [names, values] = pair else { continue };
                let (Some((group, names)), Some((_, values))) =
                    (names.split_once(':'), values.split_once(':'))
                else {
                    continue;
                };
                for (name, value) in names.split_whitespace().zip(values.split_whitespace()) {
                    counters.insert(format!("{group}.{name}"), value.parse().unwrap_or(0));
                }
            }
        }
        Ok(counters)
    })
    .context("entering a namespace")?
    .context("reading TCP counters")
}

fn delta(before: &HashMap<String, i64>, after: &HashMap<String, i64>, key: &str) -> u64 {
    let get = |m: &HashMap<String, i64>| m.get(key).copied().unwrap_or(0);
    (get(after) - get(before)).max(0) as u64
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
            .map(|(name, interface)| LocalEndpoint {
                kind: EndpointKind::Workload,
                namespace: Some("bench".into()),
                name: name.to_string(),
                interface: interface.clone(),
            })
            .collect();
        let table = render(
            &cluster,
            &local,
            &RenderConfig {
                workload_prefix: "cali".into(),
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
