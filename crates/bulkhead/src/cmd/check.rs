//! `bulkhead check`: explain the verdict of one flow under a set of policies.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use bulkhead_api::load_paths;
use bulkhead_api::values::Protocol;
use bulkhead_engine::{Cluster, EndpointKind, Flow, Verdict, explain::explain};

use crate::cmd::host_defaults::HostDefaultsArgs;

/// Arguments of `bulkhead check`.
#[derive(clap::Args)]
#[command(
    after_help = "Endpoints are NAMESPACE/POD, host/HOSTENDPOINT, or an IP address (anything that is \
not an endpoint is external).\n\nA flow that a host forwards (routes) through its host endpoints also meets their\n\
applyOnForward policies (and, coming in, their pre-DNAT policies): name them with\n\
--in-via and --out-via (without them, a hint on stderr names the host endpoints of an end\n\
workload's node that have such policies).\n\nExit status: 0 if the flow is allowed, 1 if it is denied, 2 on error.\n\n\
Examples:\n  bulkhead check -f policies/ -f estate.yaml --from default/frontend --to kube-system/kube-dns --port 53 --protocol UDP\n  \
bulkhead check -f examples/ --from 198.18.0.10 --to prod/db --port 5432 -o json\n  \
bulkhead check -f gateway/ --from 198.18.0.10 --to 10.65.0.7 --port 443 --in-via gw-eth0"
)]
pub struct Args {
    /// Resource files or directories (YAML or JSON, multi-document; `-` for stdin).
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<PathBuf>,
    /// Source endpoint: NAMESPACE/POD, host/NAME or an IP address.
    #[arg(long)]
    from: String,
    /// Destination endpoint: NAMESPACE/POD, host/NAME or an IP address.
    #[arg(long)]
    to: String,
    /// Destination port (required for TCP, UDP and SCTP).
    #[arg(long)]
    port: Option<u16>,
    /// Protocol: TCP, UDP, SCTP, ICMP, ICMPv6 or a number.
    #[arg(long, default_value = "TCP")]
    protocol: String,
    /// The flow is forwarded in through this HostEndpoint (by name).
    #[arg(long, value_name = "HOSTENDPOINT")]
    in_via: Option<String>,
    /// The flow is forwarded out through this HostEndpoint (by name).
    #[arg(long, value_name = "HOSTENDPOINT")]
    out_via: Option<String>,
    /// Address family to use for endpoints with both (4 or 6).
    #[arg(long, default_value_t = 4)]
    family: u8,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    output: Output,
    #[command(flatten)]
    host_defaults: HostDefaultsArgs,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Output {
    /// The path through the tiers, in words.
    Text,
    /// The full decision as JSON.
    Json,
}

/// Runs the check.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let loaded = load_paths(&args.files).map_err(|e| anyhow!("{e}"))?;
    let resources: Vec<_> = loaded.into_iter().map(|l| l.resource).collect();
    let mut cluster =
        Cluster::build(&resources).context("the resources do not form a valid model")?;
    cluster.override_host_defaults(args.host_defaults.overrides());
    let protocol = Protocol::parse(&args.protocol).ok_or_else(|| {
        anyhow!(
            "unknown protocol {:?}: expected TCP, UDP, SCTP, ICMP, ICMPv6 or a number",
            args.protocol
        )
    })?;
    let src = resolve(&cluster, &args.from, args.family).context("--from")?;
    let dst = resolve(&cluster, &args.to, args.family).context("--to")?;
    let flow = match protocol {
        Protocol::ICMP | Protocol::ICMPV6 => Flow::echo_request(src, dst),
        p if p.supports_ports() => {
            let port = args
                .port
                .ok_or_else(|| anyhow!("--port is required for {p}"))?;
            Flow::with_port(src, dst, p, port)
        }
        p => Flow {
            src,
            dst,
            protocol: p,
            src_port: None,
            dst_port: args.port,
            icmp: None,
        },
    };
    let via = cluster
        .via(args.in_via.as_deref(), args.out_via.as_deref())
        .map_err(|e| anyhow!("--in-via/--out-via: {e} in the loaded resources"))?;
    let decision = cluster.evaluate_via(&flow, via);
    match args.output {
        Output::Text => {
            let (from, to) = (label(&cluster, &args.from), label(&cluster, &args.to));
            print!("{}", explain(&cluster, &flow, &decision, &from, &to));
            if args.in_via.is_none() && args.out_via.is_none() {
                for hint in forwarding_hints(&cluster, &flow) {
                    eprintln!("hint: {hint}");
                }
            }
        }
        Output::Json => {
            let doc = serde_json::json!({
                "flow": {
                    "from": args.from, "to": args.to,
                    "src": flow.src.to_string(), "dst": flow.dst.to_string(),
                    "protocol": flow.protocol.to_string(), "port": flow.dst_port,
                    "inVia": args.in_via, "outVia": args.out_via,
                },
                "verdict": decision.verdict(),
                "pending": decision.pending_verdict(),
                "trace": decision.enforced.trace_strings(),
                "pendingTrace": decision.pending().trace_strings(),
                "decision": decision,
            });
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
    }
    Ok(match decision.verdict() {
        Verdict::Allow => ExitCode::SUCCESS,
        Verdict::Deny => ExitCode::FAILURE,
    })
}

/// For a flow not asked about as forwarded: the host endpoints on an end workload's node
/// whose policies would also apply if the node forwards the flow through them.
fn forwarding_hints(cluster: &Cluster, flow: &Flow) -> Vec<String> {
    let mut hints = Vec::new();
    for (ip, ingress, flag, way) in [
        (flow.dst, true, "--in-via", "comes in through"),
        (flow.src, false, "--out-via", "leaves through"),
    ] {
        let Some(workload) = cluster
            .endpoint_owning(ip)
            .filter(|e| e.kind == EndpointKind::Workload)
        else {
            continue;
        };
        let Some(node) = workload.node.as_deref() else {
            continue;
        };
        for hep in cluster.forwarding_host_endpoints(node, ingress) {
            hints.push(format!(
                "if the flow {way} host endpoint {} of node {node}, its policies for forwarded traffic apply too: add {flag} {}",
                hep.name, hep.name
            ));
        }
    }
    hints
}

/// How the explanation names an end given as `text`: as given, except an address that no
/// endpoint has and a `Node` resource lists, which is named after its node.
fn label(cluster: &Cluster, text: &str) -> String {
    match text.parse::<IpAddr>() {
        Ok(ip) if cluster.endpoint_owning(ip).is_none() => match cluster.node_at(ip) {
            Some(node) => format!("node {node}"),
            None => text.to_string(),
        },
        _ => text.to_string(),
    }
}

/// NAMESPACE/POD, host/NAME or an IP address → the address to use.
fn resolve(cluster: &Cluster, text: &str, family: u8) -> anyhow::Result<IpAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(ip);
    }
    let endpoint = match text.split_once('/') {
        Some(("host", name)) => cluster
            .host(name)
            .ok_or_else(|| anyhow!("no HostEndpoint named {name:?} in the loaded resources"))?,
        Some((ns, name)) => cluster.workload(ns, name).ok_or_else(|| {
            anyhow!("no pod or WorkloadEndpoint {ns}/{name} in the loaded resources")
        })?,
        None => bail!("{text:?} is not NAMESPACE/POD, host/NAME or an IP address"),
    };
    endpoint
        .ips
        .iter()
        .copied()
        .find(|ip| ip.is_ipv6() == (family == 6))
        .ok_or_else(|| anyhow!("{text} has no IPv{family} address"))
}
