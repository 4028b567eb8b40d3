//! The other half of the calc contract: the graph's verdicts are the engine's, in the
//! kernel. Random tiers and policies over four fixed workloads in a node sandbox are fed
//! to a fresh graph in random order; its table is applied with the agent's dataplane, and
//! real probes (TCP and UDP, every ordered pair of workloads) must get exactly what
//! `Cluster::verdict` says for the same resources. Then one random policy change goes
//! through the same graph as a delta and the kernel as a diff, and everything is probed
//! again. Needs root, `ip` and `nft`; otherwise the test passes after saying why.

mod common;

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use bulkhead_api::Resource;
use bulkhead_calc::{CalcGraph, NodeConfig, Update};
use bulkhead_dataplane::{CommandRunner, Dataplane, RenderConfig};
use bulkhead_engine::{Cluster, Flow, Mode, Verdict};
use bulkhead_netns::{BatchOptions, Endpoint, NodeSandbox, Probe, Service, run_batch};
use common::{NODE, resource};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

/// A workload: namespace, name, labels.
type Pod = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// The workloads.
const PODS: [Pod; 4] = [
    ("ns0", "p0", &[("app", "a")]),
    ("ns0", "p1", &[("app", "b")]),
    ("ns1", "p2", &[("app", "a"), ("role", "db")]),
    ("ns1", "p3", &[]),
];
const SELECTORS: [&str; 6] = [
    "app == 'a'",
    "app == 'b'",
    "all()",
    "role == 'db'",
    "has(app)",
    "!has(role)",
];
/// (protocol, port) of every service each workload answers.
const SERVICES: [(&str, u16); 3] = [("TCP", 80), ("TCP", 443), ("UDP", 5353)];

/// One rule of a policy: action, protocol, destination ports, peer selector, peer
/// namespace selector.
fn rule() -> impl Strategy<Value = Value> {
    (
        select(&["Allow", "Allow", "Deny", "Pass", "Log"]),
        select(&[None, Some("TCP"), Some("UDP")]),
        select(vec![
            None,
            Some(json!([80])),
            Some(json!([443])),
            Some(json!(["80:443"])),
        ]),
        select(&[
            None,
            Some("app == 'a'"),
            Some("app == 'b'"),
            Some("has(role)"),
        ]),
        select(&[None, Some("env == 'prod'")]),
    )
        .prop_map(|(action, protocol, ports, peer, peer_ns)| {
            let mut r = json!({"action": action});
            let mut dst = json!({});
            let mut peer_entity = json!({});
            if let Some(p) = protocol {
                r["protocol"] = p.into();
                if let Some(ports) = ports {
                    dst["ports"] = ports;
                }
            }
            if let Some(s) = peer {
                peer_entity["selector"] = s.into();
            }
            if let Some(s) = peer_ns {
                peer_entity["namespaceSelector"] = s.into();
            }
            r["destination"] = dst;
            r["peer"] = peer_entity;
            r
        })
}

/// A policy document: GlobalNetworkPolicy or namespaced NetworkPolicy, in `default` or
/// `t1`, with a random selector, order, types and rules. `peer` in a rule is moved to the
/// source (ingress) or destination (egress).
fn policy(name: &'static str) -> impl Strategy<Value = Value> {
    (
        select(&[None, Some("ns0"), Some("ns1")]),
        select(&["default", "t1"]),
        select(&SELECTORS),
        select(&[None, Some(1.0), Some(10.0)]),
        select(vec![
            vec!["Ingress"],
            vec!["Egress"],
            vec!["Ingress", "Egress"],
        ]),
        prop::collection::vec(rule(), 0..3),
        prop::collection::vec(rule(), 0..3),
    )
        .prop_map(move |(ns, tier, selector, order, types, ingress, egress)| {
            let place = |rules: Vec<Value>, side: &str| -> Vec<Value> {
                rules
                    .into_iter()
                    .map(|mut r| {
                        let peer = r["peer"].take();
                        if let Some(o) = r.as_object_mut() {
                            o.remove("peer");
                        }
                        if side == "source" {
                            r["source"] = peer;
                        } else {
                            let mut dst = r["destination"].take();
                            if let (Some(d), Some(p)) = (dst.as_object_mut(), peer.as_object()) {
                                d.extend(p.clone());
                            }
                            r["destination"] = dst;
                        }
                        r
                    })
                    .collect()
            };
            let full_name = if tier == "default" {
                name.to_string()
            } else {
                format!("{tier}.{name}")
            };
            let mut spec = json!({
                "tier": tier,
                "selector": selector,
                "types": types,
                "ingress": place(ingress, "source"),
                "egress": place(egress, "destination"),
            });
            if let Some(o) = order {
                spec["order"] = json!(o);
            }
            let (kind, meta) = match ns {
                Some(ns) => ("NetworkPolicy", json!({"name": full_name, "namespace": ns})),
                None => ("GlobalNetworkPolicy", json!({"name": full_name})),
            };
            json!({"apiVersion": "projectcalico.org/v3", "kind": kind,
                   "metadata": meta, "spec": spec})
        })
}

/// The random part of one case: tier t1's default, the policies, the order they reach
/// the graph in, and a replacement for one of them.
fn case() -> impl Strategy<Value = (String, Vec<Value>, Vec<usize>, Value)> {
    (
        select(&["Deny", "Pass"]).prop_map(String::from),
        (policy("q0"), policy("q1"), policy("q2"), policy("q3")),
        Just((0..10).collect::<Vec<usize>>()).prop_shuffle(),
        policy("q1"),
    )
        .prop_map(|(default, (a, b, c, d), order, change)| {
            (default, vec![a, b, c, d], order, change)
        })
}

struct World {
    node: NodeSandbox,
    pods: Vec<Endpoint>,
}

impl World {
    fn new() -> World {
        let node = NodeSandbox::new(&format!("bh-calc-kernel-{}", std::process::id()))
            .expect("node sandbox");
        let pods: Vec<Endpoint> = (0..PODS.len())
            .map(|i| {
                let ip = Ipv4Addr::new(10, 65, 0, i as u8 + 1);
                node.add_workload(PODS[i].1, ip, None).expect("workload")
            })
            .collect();
        let services: Vec<Service> = SERVICES
            .iter()
            .map(|&(p, port)| match p {
                "TCP" => Service::Tcp(port),
                _ => Service::Udp(port),
            })
            .collect();
        for p in &pods {
            p.netns().serve(&services).expect("servers");
        }
        World { node, pods }
    }

    /// Namespaces, the tier and the workloads (WorkloadEndpoints on the sandbox's
    /// interfaces).
    fn fixed(&self, t1_default: &str) -> Vec<Resource> {
        let mut out = vec![
            resource(
                r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns0", "labels": {"env": "prod"}}}"#,
            ),
            resource(
                r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns1", "labels": {"env": "dev"}}}"#,
            ),
            resource(
                &json!({"apiVersion": "projectcalico.org/v3", "kind": "Tier",
                "metadata": {"name": "t1"},
                "spec": {"order": 100, "defaultAction": t1_default}})
                .to_string(),
            ),
        ];
        for ((ns, name, labels), ep) in PODS.iter().zip(&self.pods) {
            let labels: serde_json::Map<String, Value> = labels
                .iter()
                .map(|(k, v)| (k.to_string(), Value::from(*v)))
                .collect();
            out.push(resource(
                &json!({"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
                    "metadata": {"name": name, "namespace": ns, "labels": labels},
                    "spec": {"node": NODE, "interfaceName": ep.host_ifname(),
                             "ipNetworks": [format!("{}/32", ep.ipv4())],
                             "profiles": [format!("kns.{ns}")]}})
                .to_string(),
            ));
        }
        out
    }

    /// Probes every service of every ordered pair and compares with the engine. The
    /// node's conntrack table is emptied first: the probes stand for new flows, and an
    /// earlier allowed UDP probe whose source port a new one reuses would otherwise pass
    /// as established after a change that denies it.
    fn check(&self, resources: &[Resource], context: &str) -> Result<(), TestCaseError> {
        self.node
            .netns()
            .flush_conntrack()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let cluster = Cluster::build(resources).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut probes = Vec::new();
        let mut want = Vec::new();
        for (i, from) in self.pods.iter().enumerate() {
            for (j, to) in self.pods.iter().enumerate() {
                if i == j {
                    continue;
                }
                let (src, dst) = (IpAddr::V4(from.ipv4()), IpAddr::V4(to.ipv4()));
                for &(proto, port) in &SERVICES {
                    let (probe, flow) = match proto {
                        "TCP" => (
                            Probe::tcp(from.netns(), dst, port),
                            Flow::tcp(src, dst, port),
                        ),
                        _ => (
                            Probe::udp(from.netns(), dst, port),
                            Flow::with_port(src, dst, bulkhead_api::values::Protocol::UDP, port),
                        ),
                    };
                    let probe = Probe {
                        timeout: Duration::from_millis(500),
                        ..probe
                    };
                    probes.push(probe);
                    want.push((
                        format!("{} -> {} {proto}/{port}", PODS[i].1, PODS[j].1),
                        cluster.verdict(Mode::Enforced, &flow) == Verdict::Allow,
                    ));
                }
            }
        }
        let options = BatchOptions {
            parallelism: 12,
            deadline: Duration::from_secs(20),
        };
        let got = run_batch(&probes, &options);
        for ((what, expected), reached) in want.iter().zip(got) {
            prop_assert_eq!(
                reached,
                *expected,
                "{}: {} (engine: {})",
                context,
                what,
                if *expected { "allow" } else { "deny" }
            );
        }
        Ok(())
    }
}

#[test]
fn the_graphs_table_gives_the_engines_verdicts_in_the_kernel() {
    if !bulkhead_netns::kernel_tests_can_run(true) {
        return;
    }
    let world = World::new();
    let config = NodeConfig {
        node: NODE.into(),
        render: RenderConfig {
            workload_prefix: "cali".into(),
            ..RenderConfig::default()
        },
    };
    // The closure proptest runs is `Fn`: the dataplane, which every case diffs against,
    // is borrowed mutably inside it.
    let dp = RefCell::new(Dataplane::new(CommandRunner::in_netns(world.node.name())));
    let mut runner = TestRunner::new(Config {
        cases: 10,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&case(), |(t1_default, policies, order, change)| {
        let mut resources = world.fixed(&t1_default);
        resources.extend(policies.iter().map(|p| resource(&p.to_string())));
        // Everything reaches a fresh graph in a random order, then one flush.
        let mut graph = CalcGraph::new(config.clone());
        let mut shuffled: Vec<&Resource> = Vec::new();
        for &i in &order {
            if let Some(r) = resources.get(i) {
                shuffled.push(r);
            }
        }
        for r in &resources {
            if !shuffled.iter().any(|s| std::ptr::eq(*s, r)) {
                shuffled.push(r);
            }
        }
        for r in shuffled {
            graph.apply(Update::Upsert(r.clone()));
        }
        graph.flush();
        dp.borrow_mut()
            .apply(graph.table().clone())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        world.check(&resources, "after the initial load")?;

        // One policy replaced: a delta through the graph, a diff through the kernel.
        let change = resource(&change.to_string());
        resources.retain(|r| r.key() != change.key());
        resources.push(change.clone());
        graph.apply(Update::Upsert(change));
        graph.flush();
        dp.borrow_mut()
            .apply(graph.table().clone())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        world.check(&resources, "after the change")
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
