//! The demo estate: two node sandboxes, a bare-metal database host, an internet client,
//! six workloads, and the policy files from `examples/demo/` (compiled into the binary
//! so `bulkhead demo` runs from anywhere).

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use anyhow::Context;
use bulkhead_netns::{
    Cidr, Endpoint, EndpointKind, NodeSandbox, Service, VethEnd, unique_name, veth_pair,
};

/// The policy-as-code files, in apply order.
pub const POLICY_FILES: [(&str, &str); 6] = [
    (
        "00-tiers.yaml",
        include_str!("../../../../examples/demo/00-tiers.yaml"),
    ),
    (
        "05-estate.yaml",
        include_str!("../../../../examples/demo/05-estate.yaml"),
    ),
    (
        "10-security.yaml",
        include_str!("../../../../examples/demo/10-security.yaml"),
    ),
    (
        "20-platform.yaml",
        include_str!("../../../../examples/demo/20-platform.yaml"),
    ),
    (
        "30-app.yaml",
        include_str!("../../../../examples/demo/30-app.yaml"),
    ),
    (
        "40-staged.yaml",
        include_str!("../../../../examples/demo/40-staged.yaml"),
    ),
];

/// The database host's address (the HostEndpoint's expectedIPs in 05-estate.yaml).
pub const DBHOST_IP: Ipv4Addr = Ipv4Addr::new(10, 66, 0, 3);

/// Node n1's own address, where its "kubelet" listens.
pub const N1_IP: Ipv4Addr = Ipv4Addr::new(10, 66, 1, 1);

/// The port node n1's "kubelet" listens on.
pub const KUBELET_PORT: u16 = 10250;

/// One workload of the estate.
pub struct WorkloadDef {
    /// Node (`n1` or `n2`).
    pub node: &'static str,
    /// Namespace.
    pub namespace: &'static str,
    /// Pod name.
    pub name: &'static str,
    /// Address.
    pub ip: Ipv4Addr,
    /// Labels.
    pub labels: &'static [(&'static str, &'static str)],
    /// What it serves.
    pub serves: &'static [Service],
}

/// The workloads.
pub const WORKLOADS: [WorkloadDef; 6] = [
    WorkloadDef {
        node: "n1",
        namespace: "web-prod",
        name: "frontend",
        ip: Ipv4Addr::new(10, 65, 1, 10),
        labels: &[("app", "frontend")],
        serves: &[Service::Tcp(80)],
    },
    WorkloadDef {
        node: "n1",
        namespace: "shop-prod",
        name: "checkout",
        ip: Ipv4Addr::new(10, 65, 1, 11),
        labels: &[("app", "checkout")],
        serves: &[Service::Tcp(8080)],
    },
    WorkloadDef {
        node: "n1",
        namespace: "shop-prod",
        name: "catalog",
        ip: Ipv4Addr::new(10, 65, 1, 12),
        labels: &[("app", "catalog")],
        serves: &[Service::Tcp(8080)],
    },
    WorkloadDef {
        node: "n1",
        namespace: "kube-system",
        name: "coredns",
        ip: Ipv4Addr::new(10, 65, 1, 53),
        labels: &[("k8s-app", "kube-dns")],
        serves: &[Service::Udp(53)],
    },
    WorkloadDef {
        node: "n2",
        namespace: "data-prod",
        name: "database",
        ip: Ipv4Addr::new(10, 65, 2, 10),
        labels: &[("app", "database"), ("role", "database")],
        serves: &[Service::Tcp(5432)],
    },
    WorkloadDef {
        node: "n2",
        namespace: "shop-dev",
        name: "checkout",
        ip: Ipv4Addr::new(10, 65, 2, 11),
        labels: &[("app", "checkout")],
        serves: &[Service::Tcp(8080)],
    },
];

/// Everything the demo created; dropping it removes every namespace, veth and server.
pub struct Estate {
    /// Node 1.
    pub n1: NodeSandbox,
    /// Node 2.
    pub n2: NodeSandbox,
    /// Workloads by `namespace/name`.
    pub workloads: Vec<(String, Endpoint)>,
    /// The bare-metal database host (attached to node 2, with its own agent).
    pub dbhost: Endpoint,
    /// A client on the internet (attached to node 1).
    pub internet: Endpoint,
}

impl Estate {
    /// The endpoint namespace of `id` (`ns/name`, `dbhost` or `internet`).
    pub fn endpoint(&self, id: &str) -> Option<&Endpoint> {
        match id {
            "dbhost" => Some(&self.dbhost),
            "internet" => Some(&self.internet),
            _ => self.workloads.iter().find(|(w, _)| w == id).map(|(_, e)| e),
        }
    }

    /// The address of `id`: an endpoint's, or node `n1`'s own.
    pub fn address(&self, id: &str) -> Option<Ipv4Addr> {
        match id {
            "n1" => Some(N1_IP),
            _ => self.endpoint(id).map(Endpoint::ipv4),
        }
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// Builds the estate and writes the policy files and workload registrations to `dir`.
pub fn build(dir: &Path) -> anyhow::Result<Estate> {
    let n1 = NodeSandbox::new(&unique_name("demo-n1")).context("node n1")?;
    let n2 = NodeSandbox::new(&unique_name("demo-n2")).context("node n2")?;
    // The two nodes share a link; each routes the other's pods and hosts through it.
    veth_pair(
        &VethEnd::new(n1.netns(), "to-n2")
            .address(Cidr::new(ip("10.66.255.1"), 30)?)
            .route(Cidr::new(ip("10.65.2.0"), 24)?, Some(ip("10.66.255.2")))
            .route(Cidr::new(ip("10.66.0.0"), 24)?, Some(ip("10.66.255.2"))),
        &VethEnd::new(n2.netns(), "to-n1")
            .address(Cidr::new(ip("10.66.255.2"), 30)?)
            .route(Cidr::new(ip("10.65.1.0"), 24)?, Some(ip("10.66.255.1")))
            .route(Cidr::new(ip("198.18.0.0"), 15)?, Some(ip("10.66.255.1"))),
    )
    .context("linking the nodes")?;
    std::fs::create_dir_all(dir)?;
    for (name, text) in POLICY_FILES {
        std::fs::write(dir.join(name), text)?;
    }
    let mut workloads = Vec::new();
    for w in &WORKLOADS {
        let node = if w.node == "n1" { &n1 } else { &n2 };
        let id = format!("{}/{}", w.namespace, w.name);
        let ep = node
            .add_workload(&format!("{}.{}", w.namespace, w.name), w.ip, None)
            .with_context(|| format!("workload {id}"))?;
        ep.netns()
            .serve(w.serves)
            .with_context(|| format!("servers of {id}"))?;
        let labels: Vec<String> = w.labels.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        let wep = format!(
            "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {{name: {}, namespace: {}, labels: {{{}}}}}\nspec: {{orchestrator: k8s, node: {}, interfaceName: {}, ipNetworks: [{}/32]}}\n",
            w.name,
            w.namespace,
            labels.join(", "),
            w.node,
            ep.host_ifname(),
            w.ip
        );
        std::fs::write(
            dir.join(format!("wep-{}-{}.yaml", w.namespace, w.name)),
            wep,
        )?;
        workloads.push((id, ep));
    }
    let dbhost = n2
        .add_peer(EndpointKind::Host, "dbhost", DBHOST_IP, None)
        .context("database host")?;
    dbhost
        .netns()
        .serve(&[Service::Tcp(5432), Service::Tcp(22)])?;
    // Node n1's own address and a "kubelet" on it: its pods reach it as their egress
    // policy says.
    n1.add_local_address(N1_IP.into())
        .context("node n1's address")?;
    n1.netns()
        .serve(&[Service::Tcp(KUBELET_PORT)])
        .context("node n1's kubelet")?;
    let internet = n1
        .add_peer(
            EndpointKind::External,
            "internet",
            Ipv4Addr::new(198, 18, 0, 10),
            None,
        )
        .context("internet client")?;
    Ok(Estate {
        n1,
        n2,
        workloads,
        dbhost,
        internet,
    })
}
