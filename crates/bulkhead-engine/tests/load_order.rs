//! Property: evaluation never depends on the order resources were loaded in.

use std::net::IpAddr;

use bulkhead_api::{Resource, load_str};
use bulkhead_engine::{Cluster, Flow};
use proptest::prelude::*;

const SELECTORS: &[&str] = &[
    "all()",
    "app == 'a'",
    "app in {'a', 'b'}",
    "env == 'prod'",
    "!has(env)",
    "app != 'c'",
    "has(app) && env == 'dev'",
];
const ACTIONS: &[&str] = &["Allow", "Deny", "Pass", "Log"];
const TIERS: &[&str] = &["default", "t1", "t2"];

fn rule() -> impl Strategy<Value = String> {
    (0..ACTIONS.len(), 0..SELECTORS.len() + 2, any::<bool>()).prop_map(|(a, peer, port)| {
        let peer = match peer {
            i if i < SELECTORS.len() => format!("source: {{selector: \"{}\"}}", SELECTORS[i]),
            i if i == SELECTORS.len() => "source: {nets: [10.65.0.0/30]}".into(),
            _ => "source: {}".into(),
        };
        let port = if port {
            "protocol: TCP, destination: {ports: [80]},"
        } else {
            ""
        };
        format!("{{action: {}, {port} {peer}}}", ACTIONS[a])
    })
}

fn policy(i: usize) -> impl Strategy<Value = String> {
    (
        0..3usize,
        0..SELECTORS.len(),
        0..TIERS.len(),
        prop::option::of(0..3u8),
        prop::collection::vec(rule(), 0..3),
        prop::collection::vec(rule(), 0..3),
    )
        .prop_map(move |(kind, sel, tier, order, ingress, egress)| {
            let (kind, ns) = match kind {
                0 => ("GlobalNetworkPolicy", String::new()),
                1 => ("NetworkPolicy", ", namespace: x".to_string()),
                _ => ("StagedGlobalNetworkPolicy", String::new()),
            };
            let order = order.map(|o| format!("order: {o}, ")).unwrap_or_default();
            format!(
                "apiVersion: projectcalico.org/v3\nkind: {kind}\nmetadata: {{name: p{}{ns}}}\nspec: {{tier: {}, {order}selector: \"{}\", ingress: [{}], egress: [{}]}}\n",
                i % 3,
                TIERS[tier],
                SELECTORS[sel],
                ingress.join(", "),
                egress.join(", ")
            )
        })
}

const ESTATE: &str = "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: t1}\nspec: {order: 10, defaultAction: Pass}\n---\napiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: t2}\nspec: {order: 20}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: x, labels: {env: prod}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: x, labels: {app: a}}\nstatus: {podIP: 10.65.0.1}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: b, namespace: x, labels: {app: b, env: dev}}\nstatus: {podIP: 10.65.0.2}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: c, namespace: y, labels: {app: c}}\nstatus: {podIP: 10.65.0.5}\n---\napiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata: {name: h, labels: {env: prod}}\nspec: {node: n, expectedIPs: [10.66.0.1]}\n";

fn scenario() -> impl Strategy<Value = (Vec<Resource>, Vec<Resource>)> {
    // Policies get distinct (kind, namespace, name) because names are p0..p2 per kind
    // and namespace, and duplicates of a key are dropped before shuffling.
    prop::collection::vec((0..9usize).prop_flat_map(policy), 1..8).prop_flat_map(|docs| {
        let text = format!("{ESTATE}---\n{}", docs.join("---\n"));
        let mut resources: Vec<Resource> = load_str("gen.yaml", &text)
            .expect("generated resources are valid")
            .into_iter()
            .map(|l| l.resource)
            .collect();
        resources.sort_by_key(Resource::key);
        resources.dedup_by_key(|r| r.key());
        let shuffled = Just(resources.clone()).prop_shuffle();
        (Just(resources), shuffled)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn evaluation_is_independent_of_load_order((ordered, shuffled) in scenario()) {
        let a = Cluster::build(&ordered).expect("valid model");
        let b = Cluster::build(&shuffled).expect("valid model");
        let ips: Vec<IpAddr> = ["10.65.0.1", "10.65.0.2", "10.65.0.5", "10.66.0.1", "198.18.0.1"]
            .iter()
            .map(|s| s.parse().expect("address"))
            .collect();
        for &src in &ips {
            for &dst in &ips {
                for port in [80, 81] {
                    let flow = Flow::tcp(src, dst, port);
                    prop_assert_eq!(a.evaluate(&flow), b.evaluate(&flow), "flow {}", flow);
                }
            }
        }
    }
}
