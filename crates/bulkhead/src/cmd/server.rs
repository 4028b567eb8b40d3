//! `bulkhead server`: the control plane (HTTP API, RBAC, audit log) on one address.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bulkhead_server::{EtcdOptions, ServerConfig, StoreConfig};

/// Which datastore to use.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    /// One redb file in `<data-dir>/store` (single server).
    Embedded,
    /// etcd v3 (several servers can share it).
    Etcd,
}

/// Arguments of `bulkhead server`.
#[derive(clap::Args)]
#[command(
    after_help = "Serves plain HTTP: keep it on loopback, or put a TLS proxy in front.\n\
At first start the admin token is written to <data-dir>/admin.token (mode 0600); other\n\
users, roles and bindings come from <data-dir>/rbac.yaml (see docs/api.md). Changes and\n\
denied requests are appended to <data-dir>/audit.log; check it with `bulkhead audit verify`.\n\n\
Examples:\n  bulkhead server --data-dir /var/lib/bulkhead/server\n  \
bulkhead server --store etcd --etcd-endpoints http://10.0.0.1:2379,http://10.0.0.2:2379"
)]
pub struct Args {
    /// Address to listen on (plain HTTP).
    #[arg(long, default_value = "127.0.0.1:8443", env = "BULKHEAD_LISTEN")]
    listen: SocketAddr,
    /// Data directory: admin.token, rbac.yaml, audit.log and the embedded store.
    #[arg(
        long,
        default_value = "/var/lib/bulkhead/server",
        env = "BULKHEAD_DATA_DIR"
    )]
    data_dir: PathBuf,
    /// Datastore.
    #[arg(long, value_enum, default_value = "embedded")]
    store: StoreKind,
    /// etcd client URLs, comma-separated (with --store etcd).
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:2379")]
    etcd_endpoints: Vec<String>,
    /// Prefix for every key in etcd, so several clusters can share one etcd.
    #[arg(long, default_value = "")]
    etcd_prefix: String,
    /// Seconds between watch bookmarks.
    #[arg(long, default_value = "10", hide = true)]
    bookmark_seconds: u64,
}

/// Runs the server until SIGINT or SIGTERM.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut config = ServerConfig::new(args.listen, &args.data_dir);
    config.bookmark_interval = Duration::from_secs(args.bookmark_seconds.max(1));
    if args.store == StoreKind::Etcd {
        config.store = StoreConfig::Etcd(EtcdOptions {
            endpoints: args.etcd_endpoints,
            namespace: args.etcd_prefix,
            ..EtcdOptions::default()
        });
    }
    bulkhead_server::run_blocking(config, |server| {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "bulkhead server listening on {} (plain HTTP: keep it on loopback or behind a TLS proxy)",
            server.url()
        );
        let _ = writeln!(out, "admin token: {}", server.admin_token_path().display());
        let _ = writeln!(out, "audit log:   {}", server.audit_log_path().display());
        let _ = out.flush();
    })?;
    Ok(ExitCode::SUCCESS)
}
