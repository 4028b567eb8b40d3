//! Host endpoints in the kernel, against the engine, through the agent's path (a graph fed
//! step by step, its table applied by the dataplane):
//! - traffic a node forwards between a workload and two external networks, each behind
//!   an interface that a HostEndpoint protects (`applyOnForward`, pre-DNAT policies on
//!   the way in, untracked policies on requests and on replies), checked against
//!   `evaluate_via` for the same host endpoints;
//! - traffic between a node and its own workload (only the workload's egress applies),
//!   and from outside to the node (the host endpoint's policy applies).
//!
//! After each step, real TCP probes must get what the engine says. Needs root, `ip` and
//! `nft`; otherwise the tests pass after saying why.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use bulkhead_api::Resource;
use bulkhead_api::values::Protocol;
use bulkhead_calc::{CalcGraph, NodeConfig, Update};
use bulkhead_dataplane::{CommandRunner, Dataplane, RenderConfig};
use bulkhead_engine::{Cluster, Flow, Verdict};
use bulkhead_netns::{
    BatchOptions, Endpoint, EndpointKind, Netns, NodeSandbox, Probe, Service, run_batch,
};
use common::{NODE, resource};
use serde_json::json;

const PORTS: [u16; 2] = [80, 443];
/// The UDP port probed on forwarded paths.
const UDP_PORT: u16 = 5353;

/// One probed flow: its name, where it is sent from (namespace and address) and to, and
/// the host endpoints it is forwarded through.
struct Path<'a> {
    name: &'static str,
    from: (&'a Netns, Ipv4Addr),
    to: Ipv4Addr,
    via_in: Option<&'static str>,
    via_out: Option<&'static str>,
    /// Also probe [`UDP_PORT`].
    udp: bool,
}

/// A path forwarded through host endpoints `via_in` and `via_out`.
fn forwarded<'a>(
    name: &'static str,
    from: &'a Endpoint,
    to: &Endpoint,
    via_in: Option<&'static str>,
    via_out: Option<&'static str>,
) -> Path<'a> {
    Path {
        via_in,
        via_out,
        udp: true,
        ..Path::between(name, from, to.ipv4())
    }
}

impl<'a> Path<'a> {
    /// From endpoint `from` to `to`, not forwarded through host endpoints.
    fn between(name: &'static str, from: &'a Endpoint, to: Ipv4Addr) -> Self {
        Path {
            name,
            from: (from.netns(), from.ipv4()),
            to,
            via_in: None,
            via_out: None,
            udp: false,
        }
    }
}

fn gnp(name: &str, spec: serde_json::Value) -> Resource {
    resource(
        &json!({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
                "metadata": {"name": name}, "spec": spec})
        .to_string(),
    )
}

fn host_endpoint(name: &str, labels: serde_json::Value, spec: serde_json::Value) -> Resource {
    resource(
        &json!({"apiVersion": "projectcalico.org/v3", "kind": "HostEndpoint",
                "metadata": {"name": name, "labels": labels}, "spec": spec})
        .to_string(),
    )
}

/// The namespace and the workload `pod` (labelled `app: web`) on [`NODE`].
fn workload(pod: &Endpoint) -> Vec<Resource> {
    vec![
        resource(r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns0"}}"#),
        resource(
            &json!({"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
                    "metadata": {"name": "p0", "namespace": "ns0", "labels": {"app": "web"}},
                    "spec": {"node": NODE, "interfaceName": pod.host_ifname(),
                             "ipNetworks": [format!("{}/32", pod.ipv4())],
                             "profiles": ["kns.ns0"]}})
            .to_string(),
        ),
    ]
}

/// Probes every path and port; returns, per probe, its name, what the engine said and
/// whether the kernel let it through.
fn check(
    node: &NodeSandbox,
    paths: &[Path<'_>],
    resources: &[Resource],
) -> Vec<(String, bool, bool)> {
    node.netns().flush_conntrack().expect("flush conntrack");
    let cluster = Cluster::build(resources).expect("valid model");
    let mut probes = Vec::new();
    let mut want = Vec::new();
    for path in paths {
        let via = cluster
            .via(path.via_in, path.via_out)
            .expect("host endpoints exist");
        let (netns, src) = path.from;
        let (src, dst) = (IpAddr::V4(src), IpAddr::V4(path.to));
        let udp = path.udp.then_some((Protocol::UDP, UDP_PORT));
        for (protocol, port) in PORTS.map(|p| (Protocol::TCP, p)).into_iter().chain(udp) {
            let flow = Flow::with_port(src, dst, protocol, port);
            let verdict = cluster.evaluate_via(&flow, via).verdict();
            want.push((
                format!("{} {protocol}/{port}", path.name),
                verdict == Verdict::Allow,
            ));
            let probe = if protocol == Protocol::UDP {
                Probe::udp(netns, dst, port)
            } else {
                Probe::tcp(netns, dst, port)
            };
            probes.push(Probe {
                source: Some(src),
                timeout: Duration::from_millis(500),
                ..probe
            });
        }
    }
    let options = BatchOptions {
        parallelism: 8,
        deadline: Duration::from_secs(20),
    };
    let got = run_batch(&probes, &options);
    want.into_iter()
        .zip(got)
        .map(|((what, engine), kernel)| (what, engine, kernel))
        .collect()
}

/// Feeds `resources`, then each step's policy, to one graph, applies its table to the
/// node after each, and checks the paths; returns, per check, how many probes the engine
/// allowed. Panics, naming every probe, where the kernel disagrees with the engine.
fn run_steps(
    node: &NodeSandbox,
    paths: &[Path<'_>],
    mut resources: Vec<Resource>,
    steps: Vec<(&str, Resource)>,
) -> Vec<usize> {
    let config = NodeConfig {
        node: NODE.into(),
        render: RenderConfig {
            workload_prefix: "cali".into(),
            ..RenderConfig::default()
        },
    };
    let mut graph = CalcGraph::new(config);
    for r in &resources {
        graph.apply(Update::Upsert(r.clone()));
    }
    graph.flush();
    let mut dp = Dataplane::new(CommandRunner::in_netns(node.name()));
    dp.apply(graph.table().clone()).expect("apply");
    let mut results = vec![("before the first step", check(node, paths, &resources))];
    for (step, policy) in steps {
        resources.push(policy.clone());
        graph.apply(Update::Upsert(policy));
        graph.flush();
        dp.apply(graph.table().clone()).expect("apply");
        results.push((step, check(node, paths, &resources)));
    }
    let word = |b: bool| if b { "allow" } else { "deny" };
    let mut report = String::new();
    for (step, probes) in &results {
        for (what, engine, kernel) in probes {
            if engine != kernel {
                report.push_str(&format!(
                    "{step}: {what}: engine {}, kernel {}\n",
                    word(*engine),
                    word(*kernel)
                ));
            }
        }
    }
    assert!(
        report.is_empty(),
        "the kernel disagrees with the engine:\n{report}"
    );
    results
        .iter()
        .map(|(_, probes)| probes.iter().filter(|(_, engine, _)| *engine).count())
        .collect()
}

/// A node sandbox (`tag` in its name) with workload `p0` at 10.65.0.1.
fn sandbox(tag: &str) -> (NodeSandbox, Endpoint) {
    let node = NodeSandbox::new(&format!("bh-calc-{tag}-{}", std::process::id())).expect("node");
    let pod = node
        .add_workload("p0", Ipv4Addr::new(10, 65, 0, 1), None)
        .expect("workload");
    (node, pod)
}

/// An external network's namespace `id` at `ip`, behind its own interface of `node`.
fn external(node: &NodeSandbox, id: &str, ip: Ipv4Addr) -> Endpoint {
    node.add_peer(EndpointKind::External, id, ip, None)
        .expect("external")
}

#[test]
fn forwarded_traffic_gets_the_engines_verdicts_through_host_endpoints() {
    if !bulkhead_netns::kernel_tests_can_run(true) {
        return;
    }
    let (node, pod) = sandbox("fwd");
    let outside = external(&node, "outside", Ipv4Addr::new(198, 18, 0, 1));
    let inside = external(&node, "inside", Ipv4Addr::new(198, 18, 1, 1));
    let services = [Service::Tcp(80), Service::Tcp(443), Service::Udp(UDP_PORT)];
    for ep in [&pod, &outside, &inside] {
        ep.netns().serve(&services).expect("servers");
    }
    let paths = [
        forwarded("outside -> pod", &outside, &pod, Some("gw-outside"), None),
        forwarded("inside -> pod", &inside, &pod, Some("gw-inside"), None),
        forwarded("pod -> inside", &pod, &inside, None, Some("gw-inside")),
        forwarded(
            "outside -> inside",
            &outside,
            &inside,
            Some("gw-outside"),
            Some("gw-inside"),
        ),
    ];
    let hep = |name: &str, side: &str, ep: &Endpoint| {
        host_endpoint(
            name,
            json!({"side": side}),
            json!({"node": NODE, "interfaceName": ep.host_ifname()}),
        )
    };
    let mut resources = workload(&pod);
    resources.extend([
        hep("gw-outside", "outside", &outside),
        hep("gw-inside", "inside", &inside),
        // Denies the hosts' own traffic; forwarded traffic is not its business.
        gnp(
            "host-lockdown",
            json!({"selector": "has(side)", "ingress": [{"action": "Deny"}],
                   "egress": [{"action": "Deny"}]}),
        ),
    ]);
    let allow_tcp = |port: u16| {
        json!([{"action": "Allow", "protocol": "TCP",
                                        "destination": {"ports": [port]}}])
    };
    let steps = vec![
        (
            "outside: only port 80 comes in",
            gnp(
                "outside-in",
                json!({"selector": "side == 'outside'", "applyOnForward": true,
                       "types": ["Ingress"], "ingress": allow_tcp(80)}),
            ),
        ),
        (
            "inside: only port 443 goes out",
            gnp(
                "inside-out",
                json!({"selector": "side == 'inside'", "applyOnForward": true,
                       "types": ["Egress"], "egress": allow_tcp(443)}),
            ),
        ),
        (
            "outside: pre-DNAT lets 443 in",
            gnp(
                "outside-prednat",
                json!({"selector": "side == 'outside'", "preDNAT": true,
                       "applyOnForward": true, "ingress": allow_tcp(443)}),
            ),
        ),
        (
            "outside: untracked, port 80 is dropped before conntrack",
            gnp(
                "outside-untracked",
                json!({"selector": "side == 'outside'", "doNotTrack": true,
                       "applyOnForward": true,
                       "ingress": [{"action": "Deny", "protocol": "TCP",
                                    "destination": {"ports": [80]}}]}),
            ),
        ),
        (
            // The pod's answer meets conntrack, which never saw the question: invalid.
            "inside: untracked, port 80 is allowed, which breaks it",
            gnp(
                "inside-untracked",
                json!({"selector": "side == 'inside'", "doNotTrack": true,
                       "applyOnForward": true, "ingress": allow_tcp(80)}),
            ),
        ),
        (
            // Untracked answers are judged afresh by every chain they cross.
            "inside: untracked, answers from port 443 are allowed",
            gnp(
                "inside-untracked-replies",
                json!({"selector": "side == 'inside'", "doNotTrack": true,
                       "applyOnForward": true,
                       "ingress": [{"action": "Allow", "protocol": "TCP",
                                    "source": {"ports": [443]}}]}),
            ),
        ),
        (
            "pod: only ports 80 and 443 come in, untracked answers too",
            gnp(
                "pod-in",
                json!({"selector": "app == 'web'", "types": ["Ingress"],
                       "ingress": [{"action": "Allow", "protocol": "TCP",
                                    "destination": {"ports": [80, 443]}},
                                   {"action": "Allow", "protocol": "UDP",
                                    "destination": {"ports": [UDP_PORT]}}]}),
            ),
        ),
        (
            "inside: untracked, answers from port 443 are dropped first",
            gnp(
                "inside-untracked-replies-dropped",
                json!({"selector": "side == 'inside'", "doNotTrack": true,
                       "applyOnForward": true, "order": 10,
                       "ingress": [{"action": "Deny", "protocol": "TCP",
                                    "source": {"ports": [443]}}]}),
            ),
        ),
        (
            // The pod's answer is a new flow to conntrack, which gw-inside's
            // applyOnForward egress (TCP 443 only) then refuses.
            "inside: untracked, UDP comes in; its answer goes out as a new flow",
            gnp(
                "inside-untracked-udp",
                json!({"selector": "side == 'inside'", "doNotTrack": true,
                       "applyOnForward": true,
                       "ingress": [{"action": "Allow", "protocol": "UDP",
                                    "destination": {"ports": [UDP_PORT]}}]}),
            ),
        ),
    ];
    let allowed = run_steps(&node, &paths, resources, steps);
    // The steps do change what gets through: everything at first, then less, then more,
    // then less at each untracked step but the one whose answers the pod's policy then
    // stops.
    assert_eq!(allowed[0], paths.len() * (PORTS.len() + 1), "{allowed:?}");
    assert!(
        allowed[1] < allowed[0] && allowed[2] < allowed[1],
        "{allowed:?}"
    );
    assert!(allowed[3] > allowed[2], "{allowed:?}");
    assert!(
        allowed[4] < allowed[3] && allowed[5] < allowed[4] && allowed[6] == allowed[5],
        "{allowed:?}"
    );
    assert!(
        allowed[7] < allowed[6] && allowed[8] < allowed[7] && allowed[9] < allowed[8],
        "{allowed:?}"
    );
}

#[test]
fn a_node_and_its_own_workload_meet_only_the_workloads_egress() {
    // pod -> node and node -> pod (4), outside -> pod (2): the node's own ports are closed.
    let Some(allowed) = own_workload_steps("own", None, KnownBy::HostEndpoint) else {
        return;
    };
    assert_eq!(allowed, [6, 5, 3, 5], "per step");
}

#[test]
fn the_nodes_felix_configuration_drops_its_workloads_and_opens_failsafe_ports_by_net() {
    // The node's own FelixConfiguration, as the agent takes it.
    let felix = resource(
        &json!({"apiVersion": "projectcalico.org/v3", "kind": "FelixConfiguration",
                "metadata": {"name": format!("node.{NODE}")},
                "spec": {"defaultEndpointToHostAction": "Drop",
                         "failsafeInboundHostPorts": [
                             {"protocol": "TCP", "port": 80, "net": "198.18.0.0/24"},
                             {"protocol": "TCP", "port": 443, "net": "10.0.0.0/8"}]}})
        .to_string(),
    );
    // node -> pod (2) and outside -> pod (2) as with Accept; pod -> node never, whatever
    // the pod's egress allows; outside -> node 80 by the failsafe port open to its net,
    // but not 443, open to another net, until the node's policy allows it.
    let Some(allowed) = own_workload_steps("own-drop", Some(felix), KnownBy::HostEndpoint) else {
        return;
    };
    assert_eq!(allowed, [5, 5, 3, 4], "per step");
}

#[test]
fn a_node_known_by_its_node_resource_alone_is_its_workloads_own_host() {
    let felix = resource(
        &json!({"apiVersion": "projectcalico.org/v3", "kind": "FelixConfiguration",
                "metadata": {"name": "default"},
                "spec": {"defaultEndpointToHostAction": "Drop"}})
        .to_string(),
    );
    // No host endpoint: outside -> node always (2). node -> pod (2) whatever the pod's
    // ingress says, pod -> node never, outside -> pod (2) until the pod takes nothing in.
    // Without the Node resource the engine took the node's address for any other.
    let Some(allowed) = own_workload_steps("own-node", Some(felix), KnownBy::NodeResource) else {
        return;
    };
    assert_eq!(allowed, [6, 6, 4, 4], "per step");
}

/// How the model knows the node's address.
#[derive(Clone, Copy, PartialEq)]
enum KnownBy {
    /// A HostEndpoint of every interface (`*`) lists it.
    HostEndpoint,
    /// Only the node's `Node` resource lists it.
    NodeResource,
}

/// Traffic between a node and its own workload, and from outside to both, over steps
/// that narrow the workload's egress and ingress and open the node, with `felix` among
/// the resources and the node's address `known` as said; returns the allowed probes per
/// step (`None` when the kernel tests cannot run here).
fn own_workload_steps(tag: &str, felix: Option<Resource>, known: KnownBy) -> Option<Vec<usize>> {
    if !bulkhead_netns::kernel_tests_can_run(true) {
        return None;
    }
    let (node, pod) = sandbox(tag);
    let outside = external(&node, "outside", Ipv4Addr::new(198, 18, 0, 1));
    let host_ip = Ipv4Addr::new(10, 66, 0, 1);
    node.add_local_address(host_ip.into()).expect("address");
    let services = [Service::Tcp(80), Service::Tcp(443)];
    for netns in [node.netns(), pod.netns(), outside.netns()] {
        netns.serve(&services).expect("servers");
    }
    let paths = [
        Path::between("pod -> node", &pod, host_ip),
        Path {
            from: (node.netns(), host_ip),
            ..Path::between("node -> pod", &pod, pod.ipv4())
        },
        Path::between("outside -> node", &outside, host_ip),
        Path {
            via_in: (known == KnownBy::HostEndpoint).then_some("node"),
            ..Path::between("outside -> pod", &outside, pod.ipv4())
        },
    ];
    let mut resources = workload(&pod);
    resources.push(match known {
        // The node's every interface, without a profile: nothing reaches it from
        // outside but its failsafe ports until a policy allows it.
        KnownBy::HostEndpoint => host_endpoint(
            "node",
            json!({"role": "node"}),
            json!({"node": NODE, "interfaceName": "*", "expectedIPs": [host_ip.to_string()]}),
        ),
        KnownBy::NodeResource => resource(
            &json!({"apiVersion": "projectcalico.org/v3", "kind": "Node",
                    "metadata": {"name": NODE},
                    "spec": {"bgp": {"ipv4Address": format!("{host_ip}/24")}}})
            .to_string(),
        ),
    });
    let steps = vec![
        (
            "the workload may only send to 443",
            gnp(
                "web-out",
                json!({"selector": "app == 'web'", "types": ["Egress"],
                       "egress": [{"action": "Allow", "protocol": "TCP",
                                   "destination": {"ports": [443]}}]}),
            ),
        ),
        (
            "the workload takes nothing in",
            gnp(
                "web-in",
                json!({"selector": "app == 'web'", "types": ["Ingress"]}),
            ),
        ),
        (
            "the node takes everything in",
            gnp(
                "node-in",
                json!({"selector": "role == 'node'", "types": ["Ingress"],
                       "ingress": [{"action": "Allow"}]}),
            ),
        ),
    ];
    resources.extend(felix);
    Some(run_steps(&node, &paths, resources, steps))
}
