//! `bulkhead audit verify` (offline, on the data directory) and `bulkhead audit list` (from
//! the server).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use bulkhead_client::Config;
use bulkhead_server::audit::LOG_FILE;
use bulkhead_server::client::Client;
use serde_json::Value;

use crate::cmd::login::ServerArgs;

/// `bulkhead audit …`.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Check the audit log's hash chain; names the first edited, reordered or removed record.
    #[command(
        after_help = "Reads <data-dir>/audit.log and audit.head directly; the server may be running.\n\
Exit code 0: the chain is intact; 1: it is broken (the line and the reason are printed).\n\n\
Example:\n  bulkhead audit verify --data-dir /var/lib/bulkhead/server"
    )]
    Verify {
        /// The server's data directory.
        #[arg(
            long,
            default_value = "/var/lib/bulkhead/server",
            env = "BULKHEAD_DATA_DIR"
        )]
        data_dir: PathBuf,
    },
    /// List audit records from the server (needs verb list on kind AuditRecord).
    #[command(after_help = "Examples:\n  bulkhead audit list --tier security\n  \
bulkhead audit list --type denied --since 2026-11-01T00:00:00Z -o json")]
    List(ListArgs),
}

/// Arguments of `bulkhead audit list`.
#[derive(clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Records at or after this time (RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// Only this user's records.
    #[arg(long)]
    user: Option<String>,
    /// Only records about this kind.
    #[arg(long)]
    kind: Option<String>,
    /// Only records about this tier.
    #[arg(long)]
    tier: Option<String>,
    /// Only records of this type: change, denied or alert.
    #[arg(long = "type")]
    record_type: Option<String>,
    /// At most this many records.
    #[arg(long)]
    limit: Option<usize>,
    /// Output format: table or json (one record per line).
    #[arg(short = 'o', long, default_value = "table")]
    output: String,
}

/// Runs an audit subcommand.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Verify { data_dir } => {
            let path = data_dir.join(LOG_FILE);
            match bulkhead_server::verify(&path) {
                Ok(n) => {
                    println!("{}: {n} records, chain intact", path.display());
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    println!("{}: {e}", path.display());
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::List(args) => list(args),
    }
}

fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let config = Config::resolve(args.server.server.as_deref(), args.server.token.as_deref())?;
    let client = Client::new(&config.server, config.token.as_deref())
        .with_context(|| format!("server {}", config.server))?;
    let mut query = Vec::new();
    for (k, v) in [
        ("since", args.since),
        ("user", args.user),
        ("kind", args.kind),
        ("tier", args.tier),
        ("type", args.record_type),
        ("limit", args.limit.map(|l| l.to_string())),
    ] {
        if let Some(v) = v {
            query.push(format!("{k}={}", encode(&v)));
        }
    }
    let path = format!("/bulkhead/v1/audit?{}", query.join("&"));
    let response = client
        .get(&path)
        .with_context(|| format!("GET {}{path}", config.server))?;
    if response.status != 200 {
        let body = response.json().ok();
        let message = body
            .as_ref()
            .and_then(|b| b["message"].as_str())
            .map_or_else(|| response.text(), str::to_string);
        bail!("the server answered {}: {message}", response.status);
    }
    let list = response.json()?;
    let items = list["items"].as_array().cloned().unwrap_or_default();
    match args.output.as_str() {
        "json" => {
            for item in &items {
                println!("{item}");
            }
        }
        "table" => print_table(&items),
        other => bail!("unknown output format {other:?}: expected table or json"),
    }
    if let Some(more) = list["metadata"]["remainingItemCount"].as_u64() {
        eprintln!("{more} more records match: raise --limit or narrow with --since");
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(items: &[Value]) {
    let s = |v: &Value, k: &str| v[k].as_str().unwrap_or("").to_string();
    let rows: Vec<[String; 7]> = items
        .iter()
        .map(|r| {
            let object = match (r["namespace"].as_str(), r["name"].as_str()) {
                (Some(ns), Some(n)) => format!("{}/{ns}/{n}", s(r, "kind")),
                (None, Some(n)) => format!("{}/{n}", s(r, "kind")),
                _ => s(r, "kind"),
            };
            [
                s(r, "time"),
                s(r, "type"),
                s(r, "user"),
                s(r, "verb"),
                object,
                s(r, "tier"),
                s(r, "outcome"),
            ]
        })
        .collect();
    let header = ["TIME", "TYPE", "USER", "VERB", "OBJECT", "TIER", "OUTCOME"].map(str::to_string);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
