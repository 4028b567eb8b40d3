//! `bulkhead conformance run`: the corpus runner.

use std::path::PathBuf;
use std::process::ExitCode;

use bulkhead_conformance::{EvalBackend, RunOptions};

/// Conformance subcommands.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Run every case under the given paths and report `N passed, N failed`.
    #[command(
        after_help = "Examples:\n  bulkhead conformance run ../shared/conformance\n  bulkhead conformance run ../shared/conformance --tag staged\n  bulkhead conformance run ../shared/conformance/calico --filter tier-order"
    )]
    Run(RunArgs),
}

/// Where and how to run.
#[derive(clap::Args)]
pub struct RunArgs {
    /// Case files or directories (searched recursively for *.yaml).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// eval: evaluate in memory with the engine. dataplane: real namespaces, nftables
    /// and packets (needs root).
    #[arg(long, value_enum, default_value = "eval")]
    mode: Mode,
    /// Only cases with this tag (repeatable).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Only cases whose id contains this text.
    #[arg(long)]
    filter: Option<String>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Mode {
    /// In-memory evaluation.
    Eval,
    /// Real namespaces, nftables and packets.
    Dataplane,
}

/// Runs the corpus; exit code 1 if any case failed.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    let Command::Run(args) = command;
    let options = RunOptions {
        tags: args.tags,
        filter: args.filter,
    };
    let mut eval = EvalBackend;
    let mut dataplane = crate::dataplane_mode::DataplaneBackend::default();
    let backend: &mut dyn bulkhead_conformance::Backend = match args.mode {
        Mode::Eval => &mut eval,
        Mode::Dataplane => &mut dataplane,
    };
    let stdout = std::io::stdout();
    let report = bulkhead_conformance::run(&args.paths, backend, &options, &mut stdout.lock())?;
    let (passed, failed, skipped) = report.counts();
    if passed + failed == 0 {
        if skipped > 0 {
            anyhow::bail!("every case was skipped: see the reasons above");
        }
        anyhow::bail!("no case matched: check the paths, --tag and --filter");
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
