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
use bulkhead_agent::{Agent, AgentConfig, Metrics};
use bulkhead_dataplane::RenderConfig;

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
    bulkhead_netns::preflight().context("the demo needs root, iproute2 and nftables")?;
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

fn run_in(
    args: &Args,
    work: &std::path::Path,
    resources: &std::path::Path,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<ExitCode> {
    let estate = estate::build(resources)?;
    let agents = [
        ("n1", estate.n1.name().to_string()),
        ("n2", estate.n2.name().to_string()),
        ("dbhost", estate.dbhost.netns().name().to_string()),
    ];
    let agents_stop = Arc::new(AtomicBool::new(false));
    let mut running = Vec::new();
    let mut urls = Vec::new();
    for (node, netns) in agents {
        let metrics = Arc::new(Metrics::default());
        let addr = bulkhead_agent::http::spawn("127.0.0.1:0".parse()?, Arc::clone(&metrics))?;
        urls.push(format!("{node}: http://{addr}/metrics"));
        let config = AgentConfig {
            node: node.into(),
            from_dir: resources.to_path_buf(),
            netns: Some(netns),
            state_dir: Some(work.join(format!("agent-{node}"))),
            poll: Duration::from_millis(100),
            resync: Duration::from_secs(10),
            render: RenderConfig {
                workload_prefix: "cali".into(),
            },
        };
        let stop = Arc::clone(&agents_stop);
        let m = Arc::clone(&metrics);
        let handle = std::thread::Builder::new()
            .name(format!("agent-{node}"))
            .spawn(move || Agent::new(config, m).run(&stop))?;
        running.push((handle, metrics));
    }
    let outcome = drive(args, resources, &estate, &running, &urls, stop);
    agents_stop.store(true, Ordering::SeqCst);
    for (handle, _) in running {
        let _ = handle.join();
    }
    drop(estate);
    outcome
}

fn drive(
    args: &Args,
    resources: &std::path::Path,
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
    let dir = resources.display();
    println!("Bulkhead demo: 2 nodes, 6 workloads, 1 bare-metal database host, 1 internet client");
    println!(
        "  policy as code:  {dir}  (tiers security -> platform -> app; edit a file, the agents enforce it)"
    );
    println!("  agents:          {}", urls.join(", "));
    println!(
        "  control plane:   not built yet; the agents read the resource directory (server, token and audit come with it)"
    );
    println!(
        "  explain a row:   bulkhead check -f {dir} --from web-prod/frontend --to data-prod/database --port 5432"
    );
    println!(
        "  programmed in {:.0} ms after start\n",
        started.elapsed().as_secs_f64() * 1000.0
    );
    let terminal = std::io::stdout().is_terminal() && !args.check;
    let mut mismatches = 0;
    for round in 1..=args.rounds.max(1) {
        let rows = traffic::round(estate, resources)?;
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
