//! `bulkhead`: the one command line of Bulkhead.
//!
//! Each subcommand lives in its own module under `cmd/`; this file only parses arguments
//! and dispatches. Errors are reported once, here, with their causes.

mod bench;
mod cmd;
mod dataplane_mode;
mod demo;
mod workload;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Bulkhead: label-based microsegmentation for containers, VMs and hosts, with Calico's
/// policy language.
#[derive(Parser)]
#[command(name = "bulkhead", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Dataplane benchmarks with real namespaces and packets (needs root).
    #[command(subcommand)]
    Bench(bench::Command),
    /// Run the guided demo: a small estate microsegmented for real (needs root).
    Demo(demo::Args),
    /// Explain the verdict of one flow under a set of policies.
    Check(cmd::check::Args),
    /// Run the conformance corpus.
    #[command(subcommand)]
    Conformance(cmd::conformance::Command),
    /// Enforce resources on one node (programs nftables).
    Agent(cmd::agent::Args),
    /// Create or delete node sandboxes.
    #[command(subcommand)]
    Node(cmd::node::Command),
    /// Create, delete and list workloads on a node sandbox.
    #[command(subcommand)]
    Workload(cmd::workload::Command),
    /// The CNI plugin (invoked by container runtimes; see `bulkhead cni --help`).
    #[command(
        long_about = "A CNI 1.0 plugin: CNI_COMMAND=ADD|DEL|CHECK|VERSION in the environment, the network configuration as JSON on stdin. Configuration keys: node, nodeNetns, resourceDir, ipam.subnet, ipam.subnet6. CNI_ARGS may carry K8S_POD_NAMESPACE, K8S_POD_NAME and BULKHEAD_LABELS=k=v,k2=v2."
    )]
    Cni,
    /// Create or update resources on the server from files (`-f FILE|DIR|-`).
    Apply(cmd::apply::Args),
    /// Show resources from the server as tables, YAML or JSON.
    Get(cmd::get::Args),
    /// Describe one resource: what a policy selects and its rules, what selects an endpoint.
    Describe(cmd::describe::Args),
    /// Delete resources from the server, by name or as described by files.
    Delete(cmd::delete::Args),
    /// Show what `apply -f` would change, as unified diffs.
    Diff(cmd::diff::Args),
    /// Check a server URL and token and save them for later commands.
    Login(cmd::login::Args),
    /// Run the control plane: HTTP API, tier RBAC and the audit log.
    Server(cmd::server::Args),
    /// Verify the audit log's hash chain, or list audit records from the server.
    #[command(subcommand)]
    Audit(cmd::audit::Command),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The services say what they do (start, each apply, repairs); one-shot commands and
    // the demo, which draws its own screen, only warn. `BULKHEAD_LOG` overrides both.
    let default_level = match cli.command {
        Command::Agent(_) | Command::Server(_) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BULKHEAD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let result = match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Bench(c) => bench::run(c),
        Command::Check(args) => cmd::check::run(args),
        Command::Conformance(c) => cmd::conformance::run(c),
        Command::Agent(args) => cmd::agent::run(args),
        Command::Node(c) => cmd::node::run(c),
        Command::Workload(c) => cmd::workload::run(c),
        Command::Cni => cmd::cni::run(),
        Command::Apply(args) => cmd::apply::run(args),
        Command::Get(args) => cmd::get::run(args),
        Command::Describe(args) => cmd::describe::run(args),
        Command::Delete(args) => cmd::delete::run(args),
        Command::Diff(args) => cmd::diff::run(args),
        Command::Login(args) => cmd::login::run(args),
        Command::Server(args) => cmd::server::run(args),
        Command::Audit(c) => cmd::audit::run(c),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
