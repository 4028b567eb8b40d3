//! `bulkhead node`: node sandboxes (a network namespace that routes for its workloads).

use std::process::ExitCode;

use bulkhead_netns::persistent::{create_node, delete_node};

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
    /// Delete a node sandbox and every veth attached to it.
    Del {
        /// The namespace name.
        name: String,
    },
}

/// Runs a node subcommand.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Add { name } => {
            create_node(&name)?;
            println!("node {name} created");
        }
        Command::Del { name } => {
            delete_node(&name)?;
            println!("node {name} deleted");
        }
    }
    Ok(ExitCode::SUCCESS)
}
