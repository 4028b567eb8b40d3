//! `bulkhead agent`: enforce resources on one node.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context;
use bulkhead_agent::node_publisher::NodePublisher;
use bulkhead_agent::server_source::ServerSource;
use bulkhead_agent::source::DirSource;
use bulkhead_agent::{Agent, AgentConfig, Metrics, Source};
use bulkhead_client::{Client, Config};
use bulkhead_dataplane::naming::WORKLOAD_PREFIX;
use bulkhead_dataplane::{RenderConfig, Tagging};

use crate::cmd::host_defaults::HostDefaultsArgs;

/// Arguments of `bulkhead agent`.
#[derive(clap::Args)]
#[command(
    after_help = "The agent restores its cached rules first (a restart never opens a gap), then\n\
enforces the resources in --from-dir (re-reading it on every change) or those the server\n\
holds (--server: list, then watch; while the server is away the last state stays), and\n\
reads the kernel table back every --resync-secs to repair tampering. A HostEndpoint without\n\
interfaceName governs the interface holding one of its expectedIPs: while one exists, the agent\n\
follows the node's address changes (netlink) and moves it with them. With --server, the agent\n\
also publishes the node's Node resource (the addresses of its interfaces that are not its\n\
workloads'; only spec.addresses is written), so that `check` knows which addresses are this\n\
node's; its token then needs create and patch on Node. The token comes from\n\
--token, then BULKHEAD_TOKEN, then the config file of `bulkhead login` for that server.\n\n\
Examples:\n  \
bulkhead node add node1\n  bulkhead agent --node node1 --netns node1 --from-dir /tmp/resources --listen 127.0.0.1:9091\n  \
bulkhead agent --node node1 --server http://10.0.0.1:8080 --token \"$AGENT_TOKEN\""
)]
#[command(group(clap::ArgGroup::new("source").required(true).multiple(false)))]
pub struct Args {
    /// This node's name: pods with spec.nodeName, WorkloadEndpoints and HostEndpoints with
    /// spec.node equal to it are enforced here.
    #[arg(long, env = "BULKHEAD_NODE")]
    node: String,
    /// Directory of resources (YAML/JSON) to enforce.
    #[arg(long, env = "BULKHEAD_FROM_DIR", group = "source")]
    from_dir: Option<PathBuf>,
    /// Take the resources from this Bulkhead server (list and watch).
    #[arg(long, value_name = "URL", group = "source")]
    server: Option<String>,
    /// Bearer token for --server.
    #[arg(long, value_name = "TOKEN", requires = "server")]
    token: Option<String>,
    /// Program the node sandbox with this network namespace name instead of the agent's
    /// own namespace.
    #[arg(long)]
    netns: Option<String>,
    /// Cache directory (default /var/lib/bulkhead/agent-NODE).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Serve /metrics and /healthz here.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// How often the resource directory is checked, in milliseconds (with --server,
    /// changes are taken as soon as the watch delivers them; this is then only how often
    /// the agent wakes up with nothing to do).
    #[arg(long, default_value_t = 100)]
    poll_ms: u64,
    /// How often the kernel table is read back and compared, in seconds.
    #[arg(long, default_value_t = 10)]
    resync_secs: u64,
    /// Prefix of the node's workload interfaces.
    #[arg(long, default_value = WORKLOAD_PREFIX)]
    workload_prefix: String,
    /// Log every verdict with its rule's NFLOG tag (groups 1 and 2), for a flow-log
    /// collector; off, new connections skip the log statements.
    #[arg(long)]
    nflog_tags: bool,
    /// With --server: do not publish this node's Node resource (its addresses).
    #[arg(long, requires = "server")]
    no_publish_node: bool,
    #[command(flatten)]
    host_defaults: HostDefaultsArgs,
}

/// Runs the agent until the process is stopped.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let metrics = Arc::new(Metrics::default());
    if let Some(addr) = args.listen {
        let bound = bulkhead_agent::http::spawn(addr, Arc::clone(&metrics))?;
        eprintln!("agent {}: metrics on http://{bound}/metrics", args.node);
    }
    let state_dir = args
        .state_dir
        .unwrap_or_else(|| PathBuf::from(format!("/var/lib/bulkhead/agent-{}", args.node)));
    let (source, from) = match (&args.from_dir, &args.server) {
        (Some(dir), _) => (
            Source::Dir(DirSource::new(dir)),
            format!("directory {}", dir.display()),
        ),
        (None, Some(server)) => {
            let config = Config::resolve(Some(server), args.token.as_deref())?;
            let client = Client::from_config(&config).context("--server")?;
            if !args.no_publish_node {
                let publisher = NodePublisher::new(
                    client.clone(),
                    &args.node,
                    args.netns.as_deref(),
                    &args.workload_prefix,
                );
                std::thread::Builder::new()
                    .name("node-publisher".into())
                    .spawn(move || publisher.run(&AtomicBool::new(false)))
                    .context("cannot start the node publisher")?;
            }
            (
                Source::Server(ServerSource::new(client)),
                format!("server {server}"),
            )
        }
        (None, None) => anyhow::bail!("give --from-dir DIR or --server URL"),
    };
    tracing::info!(
        node = %args.node,
        %from,
        netns = %args.netns.as_deref().unwrap_or("(own)"),
        state_dir = %state_dir.display(),
        "agent starting"
    );
    let config = AgentConfig {
        node: args.node,
        from_dir: args.from_dir.unwrap_or_default(),
        netns: args.netns,
        state_dir: Some(state_dir),
        poll: Duration::from_millis(args.poll_ms.max(10)),
        resync: Duration::from_secs(args.resync_secs.max(1)),
        render: RenderConfig {
            workload_prefix: args.workload_prefix,
            tagging: if args.nflog_tags {
                Tagging::On
            } else {
                Tagging::Off
            },
            ..RenderConfig::default()
        },
        host_defaults: args.host_defaults.overrides(),
    };
    let mut agent = Agent::with_source(config, source, metrics);
    let stop = AtomicBool::new(false);
    agent.run(&stop);
    Ok(ExitCode::SUCCESS)
}
