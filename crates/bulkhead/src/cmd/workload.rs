//! `bulkhead workload`: create, delete and list workloads on a node sandbox.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::anyhow;
use bulkhead_api::{Resource, load_paths};
use bulkhead_netns::persistent::netns_exists;

use crate::workload::{self, WorkloadSpec, parse_labels, split_id};

/// Workload subcommands.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Create a workload: a network namespace with a veth to the node, an address and
    /// routes, registered as a WorkloadEndpoint in the agent's resource directory.
    #[command(
        after_help = "Example:\n  bulkhead workload add shop/frontend --node node1 --ip 10.65.1.10 --label app=frontend --dir /tmp/resources"
    )]
    Add {
        /// NAMESPACE/NAME.
        id: String,
        /// The node sandbox (network namespace) to attach to.
        #[arg(long)]
        node: String,
        /// The node's name as the agent knows it (default: --node).
        #[arg(long)]
        node_name: Option<String>,
        /// IPv4 address.
        #[arg(long)]
        ip: Option<Ipv4Addr>,
        /// IPv6 address.
        #[arg(long)]
        ip6: Option<Ipv6Addr>,
        /// Labels, `key=value` (repeatable or comma-separated).
        #[arg(long = "label")]
        labels: Vec<String>,
        /// The agent's resource directory.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Delete a workload: its namespace, veth and registration.
    Del {
        /// NAMESPACE/NAME.
        id: String,
        /// The node sandbox it is attached to.
        #[arg(long)]
        node: String,
        /// The agent's resource directory.
        #[arg(long)]
        dir: PathBuf,
    },
    /// List the workloads registered in a resource directory.
    List {
        /// The agent's resource directory.
        #[arg(long)]
        dir: PathBuf,
    },
}

/// The workload's own network namespace name.
fn workload_netns(node: &str, namespace: &str, name: &str) -> String {
    format!("{node}-{namespace}-{name}")
}

/// Runs a workload subcommand.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Add {
            id,
            node,
            node_name,
            ip,
            ip6,
            labels,
            dir,
        } => {
            let (namespace, name) = split_id(&id)?;
            if ip.is_none() && ip6.is_none() {
                return Err(anyhow!("give --ip and/or --ip6"));
            }
            let netns = workload_netns(&node, &namespace, &name);
            if netns_exists(&netns) {
                return Err(anyhow!(
                    "workload {id} already exists on {node} (namespace {netns})"
                ));
            }
            run_ip(&["netns", "add", &netns])?;
            let spec = WorkloadSpec {
                namespace,
                name,
                node: node_name.unwrap_or_else(|| node.clone()),
                node_netns: node,
                netns: netns.clone(),
                ifname: "eth0".into(),
                ipv4: ip,
                ipv6: ip6,
                labels: parse_labels(&labels)?,
            };
            if let Err(e) = workload::add(&spec, &dir) {
                let _ = run_ip(&["netns", "del", &netns]);
                return Err(e);
            }
            println!(
                "workload {id} created: namespace {netns}, interface {}",
                spec.host_ifname()
            );
        }
        Command::Del { id, node, dir } => {
            let (namespace, name) = split_id(&id)?;
            workload::del(&namespace, &name, &node, &dir)?;
            let netns = workload_netns(&node, &namespace, &name);
            if netns_exists(&netns) {
                run_ip(&["netns", "del", &netns])?;
            }
            println!("workload {id} deleted");
        }
        Command::List { dir } => {
            let loaded = load_paths(&[&dir]).map_err(|e| anyhow!("{e}"))?;
            println!(
                "{:<32} {:<10} {:<16} {:<30} LABELS",
                "WORKLOAD", "NODE", "INTERFACE", "ADDRESSES"
            );
            for l in loaded {
                if let Resource::WorkloadEndpoint(w) = l.resource {
                    let labels: Vec<String> = w
                        .metadata
                        .labels
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    println!(
                        "{:<32} {:<10} {:<16} {:<30} {}",
                        format!(
                            "{}/{}",
                            w.metadata.namespace.unwrap_or_default(),
                            w.metadata.name
                        ),
                        w.spec.node,
                        w.spec.interface_name,
                        w.spec.ip_networks.join(","),
                        labels.join(",")
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_ip(args: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new("ip").args(args).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(anyhow!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
