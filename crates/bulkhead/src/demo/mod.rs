//! `bulkhead demo`: a guided microsegmentation of a small estate, for real.
//!
//! Two node sandboxes and a bare-metal database host, each with its own agent, six
//! workloads in namespaces labelled by zone and environment, and the policy files of
//! `examples/demo/` (tiers security → platform → app, one staged policy). A bounded
//! traffic generator probes a fixed set of connections with real packets and prints which
//! are allowed or denied and by which tier, policy and rule. Ctrl-C (or the end of
//! `--check`) removes every namespace, veth and server it created.

mod estate;
mod traffic;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bulkhead_agent::node_publisher::NodePublisher;
use bulkhead_agent::server_source::ServerSource;
use bulkhead_agent::{Agent, AgentConfig, Metrics, Source};
use bulkhead_client::Client;
use bulkhead_server::{Server, ServerConfig};

/// Arguments of `bulkhead demo`.
#[derive(clap::Args)]
#[command(
    after_help = "Needs root (it creates network namespaces and nftables tables, never touching the\n\
machine's own network). Ctrl-C removes everything it created.\n\nExamples:\n  \
sudo bulkhead demo\n  sudo bulkhead demo --check"
)]
pub struct Args {
    /// Run the scenario once, compare every probed connection with the engine's verdict,
    /// and exit non-zero on any difference.
    #[arg(long)]
    check: bool,
    /// Stop after this many rounds of traffic.
    #[arg(long, default_value_t = 600)]
    rounds: u32,
    /// Seconds between rounds.
    #[arg(long, default_value_t = 2)]
    interval: u64,
}

/// Runs the demo.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    bulkhead_netns::nft_preflight().context("the demo needs root, iproute2 and nftables")?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))
            .context("installing the Ctrl-C handler")?;
    }
    let work = std::env::temp_dir().join(format!("bulkhead-demo-{}", std::process::id()));
    let resources = work.join("resources");
    let result = run_in(&args, &work, &resources, &stop);
    let _ = std::fs::remove_dir_all(&work);
    result
}

/// The control plane: a server with the embedded store on loopback, on its own runtime.
struct ControlPlane {
    runtime: tokio::runtime::Runtime,
    server: Option<Server>,
    client: Client,
}

impl ControlPlane {
    fn start(data_dir: &std::path::Path) -> anyhow::Result<ControlPlane> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let config = ServerConfig::new("127.0.0.1:0".parse()?, data_dir);
        let server = runtime
            .block_on(Server::start(config))
            .context("starting the server")?;
        let token = std::fs::read_to_string(server.admin_token_path())?;
        let client = Client::new(&server.url(), Some(token.trim()))?;
        Ok(ControlPlane {
            runtime,
            server: Some(server),
            client,
        })
    }

    /// Applies every resource file in `dir` (policy as code), in file order.
    fn apply_dir(&self, dir: &std::path::Path) -> anyhow::Result<usize> {
        let loaded = bulkhead_api::load_paths(&[dir]).map_err(|e| anyhow::anyhow!("{e}"))?;
        for l in &loaded {
            self.client
                .replace(&l.resource)
                .with_context(|| format!("applying {}", l.resource.key()))?;
        }
        Ok(loaded.len())
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            let _ = self.runtime.block_on(server.shutdown());
        }
    }
}

fn run_in(
    args: &Args,
    work: &std::path::Path,
    resources: &std::path::Path,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<ExitCode> {
    let control = ControlPlane::start(&work.join("server"))?;
    let estate = estate::build(resources)?;
    let applied = control.apply_dir(resources)?;
    let agents = [
        ("n1", estate.n1.name().to_string()),
        ("n2", estate.n2.name().to_string()),
        ("dbhost", estate.dbhost.netns().name().to_string()),
    ];
    let agents_stop = Arc::new(AtomicBool::new(false));
    let mut running = Vec::new();
    let mut publishers = Vec::new();
    let mut urls = Vec::new();
    for (node, netns) in agents {
        let metrics = Arc::new(Metrics::default());
        let addr = bulkhead_agent::http::spawn("127.0.0.1:0".parse()?, Arc::clone(&metrics))?;
        urls.push(format!("{node}: http://{addr}/metrics"));
        let config = AgentConfig {
            state_dir: Some(work.join(format!("agent-{node}"))),
            ..AgentConfig::for_sandbox(node, &netns, resources)
        };
        // Each node's Node (its addresses), as `bulkhead agent --server` publishes it.
        let publisher = NodePublisher::new(
            control.client.clone(),
            node,
            config.netns.as_deref(),
            "cali",
        );
        let stop = Arc::clone(&agents_stop);
        let publishing = std::thread::Builder::new()
            .name(format!("node-{node}"))
            .spawn(move || publisher.run(&stop))?;
        publishers.push(publishing);
        let stop = Arc::clone(&agents_stop);
        let m = Arc::clone(&metrics);
        let source = Source::Server(ServerSource::new(control.client.clone()));
        let handle = std::thread::Builder::new()
            .name(format!("agent-{node}"))
            .spawn(move || Agent::with_source(config, source, m).run(&stop))?;
        running.push((handle, metrics));
    }
    let outcome = drive(args, &control, applied, &estate, &running, &urls, stop);
    agents_stop.store(true, Ordering::SeqCst);
    for (handle, _) in running {
        let _ = handle.join();
    }
    for handle in publishers {
        let _ = handle.join();
    }
    drop(estate);
    drop(control);
    outcome
}

fn drive(
    args: &Args,
    control: &ControlPlane,
    applied: usize,
    estate: &estate::Estate,
    running: &[(std::thread::JoinHandle<()>, Arc<Metrics>)],
    urls: &[String],
    stop: &AtomicBool,
) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    while !running.iter().all(|(_, m)| m.is_healthy()) {
        if started.elapsed() > Duration::from_secs(30) || stop.load(Ordering::SeqCst) {
            bail!("the agents did not program their nodes within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let server = control
        .server
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("no server"))?;
    let url = server.url();
    let token = server.admin_token_path();
    let token = token.display();
    println!("Bulkhead demo: 2 nodes, 6 workloads, 1 bare-metal database host, 1 internet client");
    println!(
        "  server:          {url}  (embedded store; {applied} resources applied from examples/demo)"
    );
    println!("  admin token:     {token}");
    println!("  audit log:       {}", server.audit_log_path().display());
    println!("  policy tiers:    security -> platform -> app (one staged policy)");
    println!("  agents:          {}", urls.join(", "));
    println!(
        "  node namespaces: n1={}, n2={}, dbhost={}  (try: ip netns exec {} nft flush ruleset)",
        estate.n1.name(),
        estate.n2.name(),
        estate.dbhost.netns().name(),
        estate.n1.name()
    );
    println!("  try, meanwhile:  export BULKHEAD_SERVER={url} BULKHEAD_TOKEN=$(cat {token})");
    println!(
        "                   bulkhead get gnp -o wide; bulkhead describe gnp database; bulkhead audit list"
    );
    println!("                   bulkhead get nodes   (each agent publishes its node's addresses)");
    println!(
        "                   bulkhead apply -f my-policy.yaml   (the agents enforce it within ~100 ms)"
    );
    println!(
        "  programmed in {:.0} ms after start\n",
        started.elapsed().as_secs_f64() * 1000.0
    );
    let terminal = std::io::stdout().is_terminal() && !args.check;
    let mut mismatches = 0;
    for round in 1..=args.rounds.max(1) {
        let rows = traffic::round(estate, &control.client)?;
        mismatches = rows.iter().filter(|r| r.observed != r.expected).count();
        if terminal {
            print!("\x1b[H\x1b[J");
        }
        println!("Round {round} ({} connections, real packets):", rows.len());
        print!("{}", traffic::render(&rows));
        if args.check {
            break;
        }
        println!("\nCtrl-C to stop and remove everything.");
        let pause = Instant::now();
        while pause.elapsed() < Duration::from_secs(args.interval.max(1)) {
            if stop.load(Ordering::SeqCst) {
                println!("\nstopping: removing namespaces, veths and servers");
                return Ok(ExitCode::SUCCESS);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    if args.check {
        if mismatches > 0 {
            println!("\n{mismatches} connection(s) differ from the engine's verdict");
            return Ok(ExitCode::FAILURE);
        }
        println!("\nevery probed connection matches the engine's verdict");
    }
    Ok(ExitCode::SUCCESS)
}
