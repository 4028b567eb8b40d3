//! The demo's traffic: a fixed set of connections, probed with real packets, each
//! compared with the engine's verdict and explained by the tier/policy/rule that decided.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::anyhow;
use bulkhead_api::values::Protocol;
use bulkhead_client::Client;
use bulkhead_engine::{Cluster, Flow, Hit, RuleRef, Verdict};
use bulkhead_netns::{BatchOptions, Probe};

use super::estate::{Estate, KUBELET_PORT};

/// One connection the generator tries.
pub struct Connection {
    /// Source id (`ns/name`, `internet`, `dbhost`).
    pub from: &'static str,
    /// Destination id (as the source, or `n1`: node n1 itself).
    pub to: &'static str,
    /// Protocol.
    pub protocol: Protocol,
    /// Port.
    pub port: u16,
}

/// The connections, chosen to show every tier at work.
pub const CONNECTIONS: [Connection; 13] = [
    Connection {
        from: "internet",
        to: "web-prod/frontend",
        protocol: Protocol::TCP,
        port: 80,
    },
    Connection {
        from: "internet",
        to: "shop-prod/checkout",
        protocol: Protocol::TCP,
        port: 8080,
    },
    Connection {
        from: "web-prod/frontend",
        to: "shop-prod/checkout",
        protocol: Protocol::TCP,
        port: 8080,
    },
    Connection {
        from: "web-prod/frontend",
        to: "shop-prod/catalog",
        protocol: Protocol::TCP,
        port: 8080,
    },
    Connection {
        from: "web-prod/frontend",
        to: "data-prod/database",
        protocol: Protocol::TCP,
        port: 5432,
    },
    Connection {
        from: "web-prod/frontend",
        to: "dbhost",
        protocol: Protocol::TCP,
        port: 5432,
    },
    Connection {
        from: "web-prod/frontend",
        to: "kube-system/coredns",
        protocol: Protocol::UDP,
        port: 53,
    },
    // Its own node's kubelet: a workload's egress policy covers its node too.
    Connection {
        from: "web-prod/frontend",
        to: "n1",
        protocol: Protocol::TCP,
        port: KUBELET_PORT,
    },
    Connection {
        from: "shop-prod/checkout",
        to: "data-prod/database",
        protocol: Protocol::TCP,
        port: 5432,
    },
    Connection {
        from: "shop-prod/catalog",
        to: "data-prod/database",
        protocol: Protocol::TCP,
        port: 5432,
    },
    Connection {
        from: "shop-prod/checkout",
        to: "dbhost",
        protocol: Protocol::TCP,
        port: 5432,
    },
    Connection {
        from: "shop-dev/checkout",
        to: "data-prod/database",
        protocol: Protocol::TCP,
        port: 5432,
    },
    Connection {
        from: "shop-dev/checkout",
        to: "shop-prod/checkout",
        protocol: Protocol::TCP,
        port: 8080,
    },
];

/// One row of the table.
pub struct Row {
    /// The connection.
    pub connection: &'static Connection,
    /// What the packets did.
    pub observed: Verdict,
    /// What the engine says.
    pub expected: Verdict,
    /// What staged policies would make of it.
    pub pending: Verdict,
    /// Who decided, in words.
    pub decided_by: String,
}

/// Probes every connection once and explains it with the engine, on what the server
/// stores now.
pub fn round(estate: &Estate, client: &Client) -> anyhow::Result<Vec<Row>> {
    let (resources, _) = client.list_all()?;
    let cluster = Cluster::build(&resources)?;
    let mut probes = Vec::new();
    let mut flows = Vec::new();
    for c in &CONNECTIONS {
        let from = estate
            .endpoint(c.from)
            .ok_or_else(|| anyhow!("no endpoint {}", c.from))?;
        let to = estate
            .address(c.to)
            .ok_or_else(|| anyhow!("no endpoint {}", c.to))?;
        let (src, dst): (IpAddr, IpAddr) = (from.ipv4().into(), to.into());
        let kind = if c.protocol == Protocol::UDP {
            bulkhead_netns::Protocol::Udp
        } else {
            bulkhead_netns::Protocol::Tcp
        };
        probes.push(
            Probe::new(from.netns(), kind, dst, c.port).with_timeout(Duration::from_millis(600)),
        );
        flows.push(Flow::with_port(src, dst, c.protocol, c.port));
    }
    let options = BatchOptions {
        parallelism: 32,
        deadline: Duration::from_secs(10),
    };
    let observed = bulkhead_netns::run_batch(&probes, &options);
    Ok(CONNECTIONS
        .iter()
        .zip(flows)
        .zip(observed)
        .map(|((connection, flow), reached)| {
            let d = cluster.evaluate(&flow);
            Row {
                connection,
                observed: if reached {
                    Verdict::Allow
                } else {
                    Verdict::Deny
                },
                expected: d.verdict(),
                pending: d.pending_verdict(),
                decided_by: d
                    .enforced
                    .decided_by()
                    .map(describe)
                    .unwrap_or_else(|| "no policy".into()),
            }
        })
        .collect())
}

fn describe(h: &Hit) -> String {
    let name = match &h.policy.namespace {
        Some(ns) => format!("{ns}/{}", h.policy.name),
        None => h.policy.name.to_string(),
    };
    let rule = match h.rule {
        RuleRef::Index(i) => format!("rule {i}"),
        RuleRef::EndOfTier => "end of tier".into(),
        RuleRef::NoProfile => "no profile".into(),
        RuleRef::Failsafe => "failsafe".into(),
        RuleRef::UntrackedReply => "untracked reply".into(),
        RuleRef::EndpointToHost => "DefaultEndpointToHostAction".into(),
    };
    match &h.tier {
        Some(t) => format!("{t} / {name} / {rule}"),
        None => format!("profile {name} / {rule}"),
    }
}

/// The table, one line per connection; `MISMATCH` where packets and engine disagree.
pub fn render(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<20} {:<20} {:<9} {:<6} {:<14} {}\n",
        "FROM", "TO", "PORT", "RESULT", "STAGED", "DECIDED BY (tier / policy / rule)"
    );
    for r in rows {
        let c = r.connection;
        let result = r.observed.to_string().to_uppercase();
        let staged = if r.pending == r.expected {
            "-".to_string()
        } else {
            format!("would {}", r.pending)
        };
        let mismatch = if r.observed == r.expected {
            ""
        } else {
            "   MISMATCH: engine says "
        };
        let engine = if r.observed == r.expected {
            String::new()
        } else {
            r.expected.to_string()
        };
        out.push_str(&format!(
            "{:<20} {:<20} {:<9} {:<6} {:<14} {}{mismatch}{engine}\n",
            c.from,
            c.to,
            format!("{}/{}", c.protocol, c.port),
            result,
            staged,
            r.decided_by
        ));
    }
    out
}
