//! `bulkhead bench`: dataplane benchmarks with real namespaces, nftables and packets.
//! Each prints a Markdown table (medians/quantiles, same-run baselines and ratios) ready
//! for docs/perf.md. Needs root; never touches the machine's own network.

mod apply;
mod packets;

use std::process::ExitCode;

use anyhow::Context;

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
        /// Seconds per measurement.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Alternating baseline/policy measurements per point (medians are reported).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Adversarial case: every policy selects the server.
        #[arg(long)]
        all_select_server: bool,
    },
    /// Change -> enforced latency: policy changes and label changes, computed and applied
    /// as the agent does; a full table reload as the baseline.
    Apply {
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
    },
}

/// Runs a benchmark and prints its table.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    bulkhead_netns::preflight().context("benchmarks need root, iproute2 and nftables")?;
    match command {
        Command::Packets {
            policies,
            members,
            seconds,
            rounds,
            all_select_server,
        } => {
            let points = packets::run(
                &policies,
                members,
                seconds,
                rounds.max(1),
                all_select_server,
            )?;
            println!(
                "| policies | rules | set elements | conn/s no firewall | conn/s with policy | ratio | MB/s no firewall | MB/s with policy | ratio |"
            );
            println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
            for p in points {
                println!(
                    "| {} | {} | {} | {:.0} | {:.0} | {:.2} | {:.0} | {:.0} | {:.2} |",
                    p.policies,
                    p.rules,
                    p.elements,
                    p.baseline.connections,
                    p.with_policy.connections,
                    p.with_policy.connections / p.baseline.connections,
                    p.baseline.throughput / 1e6,
                    p.with_policy.throughput / 1e6,
                    p.with_policy.throughput / p.baseline.throughput
                );
            }
        }
        Command::Apply {
            local,
            remote,
            policies,
            changes,
        } => {
            let results = apply::run(local, remote, policies, changes)?;
            println!(
                "{local} local endpoints, {remote} cluster endpoints, {policies} policies, {changes} changes each\n"
            );
            println!("| change | samples | p50 ms | p99 ms | max ms |");
            println!("|---|---:|---:|---:|---:|");
            for l in results {
                let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
                println!(
                    "| {} | {} | {:.1} | {:.1} | {:.1} |",
                    l.what,
                    l.samples.len(),
                    ms(l.quantile(0.5)),
                    ms(l.quantile(0.99)),
                    ms(l.quantile(1.0))
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
