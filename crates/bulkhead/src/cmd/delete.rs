//! `bulkhead delete`: remove resources by kind and name, or those a file describes.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use bulkhead_api::{Kind, load_paths};

use super::apply::in_apply_order;
use super::get::{emit, kind_word, parse_kind};
use super::login::ServerArgs;

/// Arguments of `bulkhead delete`.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  bulkhead delete gnp deny-all\n  \
bulkhead delete np web -n shop\n  bulkhead delete -f policy.yaml\n\n\
With -f, the files are loaded and validated first (nothing is deleted if one is invalid),\n\
then objects are deleted in the reverse of apply's order (tiers and namespaces last).")]
pub struct Args {
    /// The kind of resource (not with -f).
    #[arg(required_unless_present = "files")]
    kind: Option<String>,
    /// Names to delete.
    #[arg(requires = "kind")]
    names: Vec<String>,
    /// Namespace of namespaced kinds (default: `default`).
    #[arg(short, long)]
    namespace: Option<String>,
    /// Delete the objects these files describe: a file, a directory or `-`.
    #[arg(short = 'f', long = "filename", value_name = "FILE|DIR|-", conflicts_with_all = ["kind", "names", "namespace"])]
    files: Vec<PathBuf>,
    /// An object that does not exist is not an error.
    #[arg(long)]
    ignore_not_found: bool,
    #[command(flatten)]
    server: ServerArgs,
}

/// Deletes.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let targets: Vec<(Kind, Option<String>, String)> = if !args.files.is_empty() {
        let loaded = match load_paths(&args.files) {
            Ok(l) => l,
            Err(errors) => {
                for e in &errors.0 {
                    eprintln!("error: {e}");
                }
                eprintln!("nothing was deleted");
                return Ok(ExitCode::from(1));
            }
        };
        let mut ordered = in_apply_order(loaded);
        ordered.reverse();
        ordered
            .into_iter()
            .map(|l| {
                let key = l.resource.key();
                (key.kind, key.namespace, key.name)
            })
            .collect()
    } else {
        let Some(kind) = args.kind.as_deref() else {
            bail!("give KIND NAME... or -f FILE");
        };
        let kind = parse_kind(kind)?;
        if args.names.is_empty() {
            bail!("give the name of the {} to delete", kind_word(kind));
        }
        args.names
            .iter()
            .map(|n| (kind, args.namespace.clone(), n.clone()))
            .collect()
    };
    let client = args.server.connect()?;
    let mut failed = false;
    for (kind, namespace, name) in targets {
        let label = format!("{}/{name}", kind_word(kind));
        match client.delete(kind, namespace.as_deref(), &name) {
            Ok(_) => emit(&format!("{label} deleted\n")),
            Err(e) if e.is_not_found() && args.ignore_not_found => {}
            Err(e @ bulkhead_client::Error::Transport { .. }) => return Err(e.into()),
            Err(e) => {
                eprintln!("error: {label}: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
