//! `bulkhead bench`: dataplane benchmarks with real namespaces, nftables and packets.
//! Each prints a Markdown table (medians/quantiles, same-run baselines and ratios) ready
//! for docs/perf.md. Needs root; never touches the machine's own network.

mod apply;
mod end_to_end;
mod memory;
mod packets;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use bulkhead_dataplane::Tagging;

/// Benchmarks.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Cost per packet: connection rate and throughput between two workloads with N
    /// policies and a large selector set, against no firewall, same run.
    Packets {
        /// Policy counts to measure (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "10,100,1000,10000")]
        policies: Vec<usize>,
        /// Remote endpoints in the server's selector set.
        #[arg(long, default_value_t = 100_000)]
        members: usize,
        /// Seconds per phase of each measurement (connection rate, then throughput).
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        /// Rounds per point; each round measures no firewall, conntrack only and the
        /// policy table once, each in a fresh sandbox (medians and ranges are reported).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Client threads opening connections (the server accepts on as many).
        #[arg(long, default_value_t = 2)]
        clients: usize,
        /// Adversarial case: every policy selects the server.
        #[arg(long)]
        all_select_server: bool,
        /// Render the policy table with its NFLOG tags, as for a flow-log collector.
        #[arg(long)]
        nflog_tags: bool,
        /// Write each point's rendered table (an `nft -f` script) into this directory.
        #[arg(long)]
        dump_tables: Option<std::path::PathBuf>,
    },
    /// Change -> enforced latency through a real server and agent process: from the API
    /// write to the node's kernel (the write's own round trip as the baseline).
    EndToEnd(Changes),
    /// Change -> enforced latency: policy changes and label changes, computed and applied
    /// as the agent does; a full table reload as the baseline.
    Apply(Changes),
    /// Memory of a real agent process once it has programmed a node, for growing
    /// clusters: the resident set per cluster endpoint and per policy, the agent with
    /// neither as the baseline.
    Memory {
        /// Local endpoints on the node.
        #[arg(long, default_value_t = 200)]
        local: usize,
        /// Cluster endpoint counts to measure (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "0,25000,50000")]
        remote: Vec<usize>,
        /// Policy counts to measure with each of them (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "0,10000")]
        policies: Vec<usize>,
        /// The bulkhead binary whose agent is measured (default: this one), e.g. an
        /// earlier build as the baseline of the same run.
        #[arg(long, value_name = "PATH")]
        agent_binary: Option<std::path::PathBuf>,
        /// Give every endpoint a label of its own (its pod name, as a StatefulSet's pods
        /// have), so that no two share their labels: the worst case for interning.
        #[arg(long)]
        distinct_labels: bool,
    },
}

/// The scenario and the number of changes of the change-latency benchmarks.
#[derive(clap::Args)]
pub struct Changes {
    /// Local endpoints on the node.
    #[arg(long, default_value_t = 200)]
    local: usize,
    /// Endpoints elsewhere in the cluster.
    #[arg(long, default_value_t = 50_000)]
    remote: usize,
    /// Policies in the cluster.
    #[arg(long, default_value_t = 10_000)]
    policies: usize,
    /// Changes of each kind to time.
    #[arg(long, default_value_t = 100)]
    changes: usize,
}

/// Runs a benchmark and prints its table.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    bulkhead_netns::nft_preflight().context("benchmarks need root, iproute2 and nftables")?;
    match command {
        Command::Packets {
            policies,
            members,
            seconds,
            rounds,
            clients,
            all_select_server,
            nflog_tags,
            dump_tables,
        } => {
            anyhow::ensure!(
                seconds > 0.0 && seconds <= 60.0,
                "--seconds must be in (0, 60]"
            );
            anyhow::ensure!((1..=50).contains(&rounds), "--rounds must be in 1..=50");
            anyhow::ensure!((1..=16).contains(&clients), "--clients must be in 1..=16");
            // Ctrl-C (and SIGTERM) end the run between connections; every sandbox is
            // then deleted on the way out.
            let stop = Arc::new(AtomicBool::new(false));
            {
                let stop = Arc::clone(&stop);
                ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))
                    .context("installing the Ctrl-C handler")?;
            }
            let options = packets::Options {
                members,
                seconds,
                rounds,
                clients,
                all_select_server,
                tagging: if nflog_tags {
                    Tagging::On
                } else {
                    Tagging::Off
                },
                dump_tables,
            };
            let load_before = load_average();
            let points = packets::run(&policies, &options, &stop)?;
            print_packets(&points, &options, &load_before, &load_average());
        }
        Command::EndToEnd(Changes {
            local,
            remote,
            policies,
            changes,
        }) => {
            let results = end_to_end::run(local, remote, policies, changes)?;
            print_latencies(
                &format!(
                    "{local} local endpoints, {remote} cluster endpoints, {policies} policies, {changes} changes each; a server and an agent process"
                ),
                &results,
            );
        }
        Command::Apply(Changes {
            local,
            remote,
            policies,
            changes,
        }) => {
            let results = apply::run(local, remote, policies, changes)?;
            print_latencies(
                &format!(
                    "{local} local endpoints, {remote} cluster endpoints, {policies} policies, {changes} changes each"
                ),
                &results,
            );
        }
        Command::Memory {
            local,
            remote,
            policies,
            agent_binary,
            distinct_labels,
        } => {
            let exe = match agent_binary {
                Some(path) => path,
                None => std::env::current_exe().context("finding the bulkhead binary")?,
            };
            let points = memory::run(&exe, local, &remote, &policies, distinct_labels)?;
            print_memory(local, &points);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The memory table, then the slopes per cluster endpoint and per policy.
fn print_memory(local: usize, points: &[memory::Point]) {
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "{local} local endpoints; one fresh agent and node sandbox per row
"
    );
    println!(
        "| cluster endpoints | policies | first sync s | agent RSS MiB | agent peak MiB | nft session RSS MiB |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for p in points {
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
            p.remote,
            p.policies,
            p.sync.as_secs_f64(),
            mib(p.rss_kib),
            mib(p.peak_kib),
            mib(p.children_kib)
        );
    }
    println!();
    let slopes = |unit: fn(&memory::Point) -> usize, group: fn(&memory::Point) -> usize| {
        let rss = memory::slopes(points, unit, group, |p| p.rss_kib);
        let peak = memory::slopes(points, unit, group, |p| p.peak_kib);
        rss.into_iter().zip(peak).map(|((g, r), (_, p))| (g, r, p))
    };
    for (policies, rss, peak) in slopes(|p| p.remote, |p| p.policies) {
        println!(
            "- per cluster endpoint, at {policies} policies: {rss:.2} KiB resident once synced, {peak:.2} KiB at the peak"
        );
    }
    for (remote, rss, peak) in slopes(|p| p.policies, |p| p.remote) {
        println!(
            "- per policy, at {remote} cluster endpoints: {rss:.2} KiB resident once synced, {peak:.2} KiB at the peak"
        );
    }
}

/// A latency table (p50, p99, max in ms) under a one-line description.
fn print_latencies(description: &str, results: &[apply::Latencies]) {
    println!("{description}\n");
    println!("| change | samples | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|");
    for l in results {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
        println!(
            "| {} | {} | {:.2} | {:.2} | {:.2} |",
            l.what,
            l.samples.len(),
            ms(l.quantile(0.5)),
            ms(l.quantile(0.99)),
            ms(l.quantile(1.0))
        );
    }
}

/// `/proc/loadavg`'s three load averages.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn print_packets(
    points: &[packets::Point],
    options: &packets::Options,
    load_before: &str,
    load_after: &str,
) {
    use packets::Variant::{Conntrack, NoFirewall, Policy};
    let range = |s: packets::Spread, scale: f64| {
        format!(
            "{:.0} ({:.0}–{:.0})",
            s.median / scale,
            s.min / scale,
            s.max / scale
        )
    };
    let ratio = |s: packets::Spread| {
        // Three decimals where two would round a collapse to 0.00.
        let d = if s.min < 0.1 { 3 } else { 2 };
        format!("{:.d$} ({:.d$}–{:.d$})", s.median, s.min, s.max)
    };
    println!(
        "{} rounds × 3 fresh sandboxes, {} s per phase, {} client threads, {} selector members{}{}; load average {load_before} at start, {load_after} at end\n",
        options.rounds,
        options.seconds,
        options.clients,
        options.members,
        if options.all_select_server {
            ", every policy selects the server"
        } else {
            ""
        },
        if options.tagging == Tagging::On {
            ", NFLOG tags on"
        } else {
            ""
        }
    );
    println!(
        "| policies | rules | set elements | conn/s no firewall | conn/s conntrack only | conn/s with policy | ratio policy/none | ratio ct/none | ratio policy/ct | MB/s no firewall | MB/s with policy | ratio | losses none/ct/policy |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for p in points {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {}/{}/{} |",
            p.policies,
            p.rules,
            p.elements,
            range(p.connections(NoFirewall), 1.0),
            range(p.connections(Conntrack), 1.0),
            range(p.connections(Policy), 1.0),
            ratio(p.connection_ratios(Policy)),
            ratio(p.connection_ratios(Conntrack)),
            ratio(p.connection_ratios_to(Policy, Conntrack)),
            range(p.throughput(NoFirewall), 1e6),
            range(p.throughput(Policy), 1e6),
            ratio(p.throughput_ratios(Policy)),
            p.losses(NoFirewall),
            p.losses(Conntrack),
            p.losses(Policy),
        );
    }
    println!(
        "\nMedian (min–max) over rounds; ratios are per round (of the same round's samples): policy / no firewall is the target's, ct / none what conntrack alone costs, policy / ct what the table costs on top. Losses: failed connects + client SYN retransmissions + server listen drops, all rounds.\n"
    );
    println!(
        "| policies | round | order | conn/s none | conn/s ct | conn/s policy | MB/s none | MB/s ct | MB/s policy |"
    );
    println!("|---:|---:|---|---:|---:|---:|---:|---:|---:|");
    for p in points {
        for (i, r) in p.rounds.iter().enumerate() {
            let order: Vec<&str> = r.order.iter().map(|v| v.label()).collect();
            println!(
                "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
                p.policies,
                i + 1,
                order.join(", "),
                r.sample(NoFirewall).connections,
                r.sample(Conntrack).connections,
                r.sample(Policy).connections,
                r.sample(NoFirewall).throughput / 1e6,
                r.sample(Conntrack).throughput / 1e6,
                r.sample(Policy).throughput / 1e6,
            );
        }
    }
}
