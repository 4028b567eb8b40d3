//! `bulkhead`: the one command line of Bulkhead.
//!
//! Each subcommand lives in its own module under `cmd/`; this file only parses arguments
//! and dispatches. Errors are reported once, here, with their causes.

mod cmd;
mod dataplane_mode;

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
    /// Explain the verdict of one flow under a set of policies.
    Check(cmd::check::Args),
    /// Run the conformance corpus.
    #[command(subcommand)]
    Conformance(cmd::conformance::Command),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BULKHEAD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(args) => cmd::check::run(args),
        Command::Conformance(c) => cmd::conformance::run(c),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
