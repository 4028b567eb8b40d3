//! `bulkhead node`: node sandboxes (a network namespace that routes for its workloads).

use std::process::ExitCode;

use bulkhead_netns::Cidr;
use bulkhead_netns::persistent::{
    NodeLink, attached_workloads, create_node, delete_node, link_nodes, netns_exists,
};

/// Node subcommands.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Create a node sandbox: a network namespace acting as a host for workloads.
    #[command(
        after_help = "Example:\n  bulkhead node add node1\n  bulkhead agent --node node1 --netns node1 --from-dir /tmp/resources"
    )]
    Add {
        /// The namespace name (also the agent's --netns).
        name: String,
    },
    /// Link two node sandboxes with a veth pair, as two hosts on one wire, so that their
    /// workloads reach each other through both nodes (and both agents' tables).
    #[command(
        after_help = "Each node gets an address of --net on its end (lnk<hash>, printed) and a route\n\
                      through the other node for every network the other side holds. The ends are\n\
                      host interfaces: a HostEndpoint naming one protects it (and, with\n\
                      applyOnForward, what the node forwards through it). Deleting either node\n\
                      removes the link.\n\n\
                      Example:\n  bulkhead node add n1; bulkhead node add n2\n  \
                      bulkhead node link n1 n2 --net 10.66.255.0/30 --a-routes 10.65.2.0/24 --b-routes 10.65.1.0/24"
    )]
    Link {
        /// One node (A).
        a: String,
        /// The other node (B).
        b: String,
        /// The link's IPv4 network, /30 or wider: A gets its first address, B the second.
        #[arg(long)]
        net: Cidr,
        /// Networks A reaches through B, e.g. B's workload addresses (comma-separated or
        /// repeated).
        #[arg(long, value_delimiter = ',')]
        a_routes: Vec<Cidr>,
        /// Networks B reaches through A.
        #[arg(long, value_delimiter = ',')]
        b_routes: Vec<Cidr>,
    },
    /// Delete a node sandbox. Refused while workloads are attached, unless --force.
    #[command(
        after_help = "Workloads go first: `bulkhead workload del` (or the runtime's CNI DEL) removes\n\
                      a workload's namespace, veth and registration. With --force the node goes\n\
                      anyway and takes the veths with it, leaving the workloads' namespaces and\n\
                      registrations behind."
    )]
    Del {
        /// The namespace name.
        name: String,
        /// Delete the node even with workloads attached.
        #[arg(long)]
        force: bool,
    },
}

/// Runs a node subcommand.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Add { name } => {
            create_node(&name)?;
            println!("node {name} created");
        }
        Command::Link {
            a,
            b,
            net,
            a_routes,
            b_routes,
        } => {
            let (if_a, if_b) = link_nodes(&NodeLink {
                a: &a,
                b: &b,
                net,
                a_routes: &a_routes,
                b_routes: &b_routes,
            })?;
            println!(
                "linked {a} ({if_a}) and {b} ({if_b}) over {}",
                net.network()
            );
        }
        Command::Del { name, force } => {
            if !netns_exists(&name) {
                anyhow::bail!("there is no node sandbox {name} (`ip netns list` shows them)");
            }
            let attached = attached_workloads(&name)?;
            if !attached.is_empty() && !force {
                anyhow::bail!(
                    "node {name} still has {} workload(s) attached (interfaces {}): delete them \
                     first with `bulkhead workload del` (or CNI DEL), or give --force",
                    attached.len(),
                    attached.join(", ")
                );
            }
            delete_node(&name)?;
            println!("node {name} deleted");
        }
    }
    Ok(ExitCode::SUCCESS)
}
