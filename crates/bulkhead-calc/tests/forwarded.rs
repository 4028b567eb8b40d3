//! Forwarded traffic through host endpoints (`applyOnForward`, and pre-DNAT policies on
//! the way in), in the kernel: a node sandbox routes between a workload and two external
//! networks, each behind an interface that a HostEndpoint protects. Policies change in
//! steps through one graph; after each, real TCP probes across the node must get what the
//! engine says for the same flow forwarded through the same host endpoints. Needs root,
//! `ip` and `nft`; otherwise the test passes after saying why.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use bulkhead_api::Resource;
use bulkhead_calc::{CalcGraph, NodeConfig, Update};
use bulkhead_dataplane::{CommandRunner, Dataplane, RenderConfig};
use bulkhead_engine::{Cluster, Flow, Verdict};
use bulkhead_netns::{
    BatchOptions, Endpoint, EndpointKind, NodeSandbox, Probe, Service, run_batch,
};
use common::{NODE, resource};
use serde_json::json;

const PORTS: [u16; 2] = [80, 443];

/// One probed flow: its name, source and destination, and the host endpoints it crosses.
struct Path<'a> {
    name: &'static str,
    from: &'a Endpoint,
    to: &'a Endpoint,
    via_in: Option<&'static str>,
    via_out: Option<&'static str>,
}

fn gnp(name: &str, spec: serde_json::Value) -> Resource {
    resource(
        &json!({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
                "metadata": {"name": name}, "spec": spec})
        .to_string(),
    )
}

/// Probes every path and port; returns, per probe, what the engine said and what the
/// kernel did, as `name port: engine/kernel` lines (the test compares them).
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
        for port in PORTS {
            let dst = IpAddr::V4(path.to.ipv4());
            let flow = Flow::tcp(IpAddr::V4(path.from.ipv4()), dst, port);
            let verdict = cluster.evaluate_via(&flow, via).verdict();
            want.push((
                format!("{} tcp/{port}", path.name),
                verdict == Verdict::Allow,
            ));
            probes.push(Probe {
                timeout: Duration::from_millis(500),
                ..Probe::tcp(path.from.netns(), dst, port)
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

#[test]
fn forwarded_traffic_gets_the_engines_verdicts_through_host_endpoints() {
    if !bulkhead_netns::kernel_tests_can_run(true) {
        return;
    }
    let node = NodeSandbox::new(&format!("bh-calc-fwd-{}", std::process::id())).expect("node");
    let pod = node
        .add_workload("p0", Ipv4Addr::new(10, 65, 0, 1), None)
        .expect("workload");
    let outside = node
        .add_peer(
            EndpointKind::External,
            "outside",
            Ipv4Addr::new(198, 18, 0, 1),
            None,
        )
        .expect("external");
    let inside = node
        .add_peer(
            EndpointKind::External,
            "inside",
            Ipv4Addr::new(198, 18, 1, 1),
            None,
        )
        .expect("external");
    let services = [Service::Tcp(80), Service::Tcp(443)];
    for ep in [&pod, &outside, &inside] {
        ep.netns().serve(&services).expect("servers");
    }
    let paths = [
        Path {
            name: "outside -> pod",
            from: &outside,
            to: &pod,
            via_in: Some("gw-outside"),
            via_out: None,
        },
        Path {
            name: "inside -> pod",
            from: &inside,
            to: &pod,
            via_in: Some("gw-inside"),
            via_out: None,
        },
        Path {
            name: "pod -> inside",
            from: &pod,
            to: &inside,
            via_in: None,
            via_out: Some("gw-inside"),
        },
        Path {
            name: "outside -> inside",
            from: &outside,
            to: &inside,
            via_in: Some("gw-outside"),
            via_out: Some("gw-inside"),
        },
    ];
    let hep = |name: &str, side: &str, ep: &Endpoint| {
        resource(
            &json!({"apiVersion": "projectcalico.org/v3", "kind": "HostEndpoint",
                    "metadata": {"name": name, "labels": {"side": side}},
                    "spec": {"node": NODE, "interfaceName": ep.host_ifname()}})
            .to_string(),
        )
    };
    let mut resources = vec![
        resource(r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns0"}}"#),
        resource(
            &json!({"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
                    "metadata": {"name": "p0", "namespace": "ns0", "labels": {"app": "web"}},
                    "spec": {"node": NODE, "interfaceName": pod.host_ifname(),
                             "ipNetworks": ["10.65.0.1/32"], "profiles": ["kns.ns0"]}})
            .to_string(),
        ),
        hep("gw-outside", "outside", &outside),
        hep("gw-inside", "inside", &inside),
        // Denies the hosts' own traffic; forwarded traffic is not its business.
        gnp(
            "host-lockdown",
            json!({"selector": "has(side)", "ingress": [{"action": "Deny"}],
                                     "egress": [{"action": "Deny"}]}),
        ),
    ];
    let steps: Vec<(&str, Resource)> = vec![
        (
            "outside: only port 80 comes in",
            gnp(
                "outside-in",
                json!({
            "selector": "side == 'outside'", "applyOnForward": true, "types": ["Ingress"],
            "ingress": [{"action": "Allow", "protocol": "TCP", "destination": {"ports": [80]}}]}),
            ),
        ),
        (
            "inside: only port 443 goes out",
            gnp(
                "inside-out",
                json!({
            "selector": "side == 'inside'", "applyOnForward": true, "types": ["Egress"],
            "egress": [{"action": "Allow", "protocol": "TCP", "destination": {"ports": [443]}}]}),
            ),
        ),
        (
            "outside: pre-DNAT lets 443 in",
            gnp(
                "outside-prednat",
                json!({
            "selector": "side == 'outside'", "preDNAT": true, "applyOnForward": true,
            "ingress": [{"action": "Allow", "protocol": "TCP", "destination": {"ports": [443]}}]}),
            ),
        ),
    ];
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
    let mut results = vec![("no applyOnForward policy", check(&node, &paths, &resources))];
    for (step, policy) in steps {
        resources.push(policy.clone());
        graph.apply(Update::Upsert(policy));
        graph.flush();
        dp.apply(graph.table().clone()).expect("apply");
        results.push((step, check(&node, &paths, &resources)));
    }
    let mut report = String::new();
    for (step, probes) in &results {
        for (what, engine, kernel) in probes {
            let word = |b: &bool| if *b { "allow" } else { "deny" };
            if engine != kernel {
                report.push_str(&format!(
                    "{step}: {what}: engine {}, kernel {}\n",
                    word(engine),
                    word(kernel)
                ));
            }
        }
    }
    assert!(
        report.is_empty(),
        "the kernel disagrees with the engine:\n{report}"
    );
    // The steps do change what gets through: everything at first, then less.
    let allowed: Vec<usize> = results
        .iter()
        .map(|(_, probes)| probes.iter().filter(|(_, engine, _)| *engine).count())
        .collect();
    assert_eq!(allowed[0], paths.len() * PORTS.len(), "{allowed:?}");
    assert!(
        allowed[1] < allowed[0] && allowed[2] < allowed[1],
        "{allowed:?}"
    );
    assert!(allowed[3] > allowed[2], "{allowed:?}");
}
