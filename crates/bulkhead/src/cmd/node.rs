//! `bulkhead node`: node sandboxes (a network namespace that routes for its workloads).

use std::process::ExitCode;

use bulkhead_netns::persistent::{attached_workloads, create_node, delete_node, netns_exists};

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
