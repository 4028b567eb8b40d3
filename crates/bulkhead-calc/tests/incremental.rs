//! The contract of `bulkhead-calc`, as a property: any sequence of upserts and deletes of
//! any kind of resource, in any order, ends in exactly the table the from-scratch path
//! (`Cluster::build` + `render`) gives for the final resources, and every intermediate
//! flush does too. Deltas replay to the same table and are empty exactly when nothing
//! changed.
//!
//! Resources come from small vocabularies so that updates collide: three namespaces,
//! a handful of pods (local to the node or not, some sharing addresses, IPv4 and IPv6),
//! workload and host endpoints (some on one interface), overlapping network sets, tiers
//! with Pass and Deny defaults (and one overriding `default`), profiles (one overriding
//! a namespace's), and policies of every kind with selectors, namespace selectors, named
//! ports, nets and service accounts. The node's interface addresses change too, which moves
//! host endpoints placed by their `expectedIPs`; FelixConfigurations and `Node` resources
//! come and go.

mod common;

use bulkhead_api::{Kind, ResourceKey};
use bulkhead_calc::Update;
use bulkhead_dataplane::render::HostInterfaces;
use common::{Harness, resource};
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Value, json};

const NAMESPACES: [&str; 3] = ["ns0", "ns1", "ns2"];
const SELECTORS: [&str; 11] = [
    "app == 'a'",
    "app == 'b'",
    "has(app)",
    "all()",
    "app in {'a', 'c'}",
    "role == 'db'",
    "!has(role)",
    "app != 'a'",
    "ext == 'yes'",
    "has(prof)",
    "app == 'a' || role == 'web'",
];
const NS_SELECTORS: [&str; 4] = ["env == 'prod'", "team == 'x'", "all()", "has(env)"];
const V4: [&str; 5] = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.1.0.1", "10.2.0.1"];
const V6: [&str; 3] = ["fd00::1", "fd00::2", "fd01::1"];
const NETS4: [&str; 5] = [
    "10.0.0.0/24",
    "10.0.0.1/32",
    "10.0.0.0/16",
    "10.1.0.0/16",
    "0.0.0.0/0",
];
const NETS6: [&str; 3] = ["fd00::/64", "fd00::1/128", "::/0"];
const NODES: [Option<&str>; 3] = [Some("node-a"), Some("node-b"), None];

fn labels(pairs: Vec<(&'static str, Option<&'static str>)>) -> Value {
    let mut m = Map::new();
    for (k, v) in pairs {
        if let Some(v) = v {
            m.insert(k.into(), v.into());
        }
    }
    Value::Object(m)
}

fn opt<T: Clone + std::fmt::Debug + 'static>(
    values: &'static [T],
) -> impl Strategy<Value = Option<T>> {
    prop_oneof![Just(None), select(values).prop_map(Some)]
}

fn endpoint_labels() -> impl Strategy<Value = Value> {
    (opt(&["a", "b", "c"]), opt(&["db", "web"]))
        .prop_map(|(app, role)| labels(vec![("app", app), ("role", role)]))
}

fn subset(pool: &'static [&'static str]) -> impl Strategy<Value = Vec<&'static str>> {
    proptest::sample::subsequence(pool, 0..=pool.len().min(3))
}

/// One side of a rule (`nets` drawn from `family`'s pool).
fn entity(family: Option<u8>, ported: bool) -> impl Strategy<Value = Value> {
    let pool: &'static [&'static str] = match family {
        Some(6) => &NETS6,
        _ => &NETS4,
    };
    (
        opt(&SELECTORS),
        opt(&SELECTORS),
        prop_oneof![
            3 => Just(None),
            1 => select(&NS_SELECTORS).prop_map(Some),
            1 => Just(Some("global()")),
        ],
        subset(pool),
        subset(pool),
        0..7usize,
        0..4usize,
    )
        .prop_map(move |(sel, not_sel, ns_sel, nets, not_nets, ports, sa)| {
            let mut e = Map::new();
            if let Some(s) = sel {
                e.insert("selector".into(), s.into());
            }
            if let Some(s) = not_sel {
                e.insert("notSelector".into(), s.into());
            }
            if let Some(s) = ns_sel {
                e.insert("namespaceSelector".into(), s.into());
            }
            if family.is_some() {
                if !nets.is_empty() {
                    e.insert("nets".into(), json!(nets));
                }
                let not_nets: Vec<&str> = not_nets
                    .into_iter()
                    .filter(|n| !n.ends_with("/0"))
                    .collect();
                if !not_nets.is_empty() {
                    e.insert("notNets".into(), json!(not_nets));
                }
            }
            if ported {
                match ports {
                    1 => {
                        e.insert("ports".into(), json!([80]));
                    }
                    2 => {
                        e.insert("ports".into(), json!(["http"]));
                    }
                    3 => {
                        e.insert("ports".into(), json!([80, "http", "dns"]));
                    }
                    4 => {
                        e.insert("notPorts".into(), json!(["http", "8000:8080"]));
                    }
                    // Overlapping ranges, so endpoints' dispatch classes split and merge.
                    5 => {
                        e.insert("ports".into(), json!([443, "8000:8080"]));
                    }
                    6 => {
                        e.insert("ports".into(), json!([8080]));
                    }
                    _ => {}
                }
            }
            match sa {
                1 => {
                    e.insert("serviceAccounts".into(), json!({"names": ["sa0"]}));
                }
                2 => {
                    e.insert("serviceAccounts".into(), json!({"selector": "role == 'x'"}));
                }
                _ => {}
            }
            Value::Object(e)
        })
}

fn rule() -> impl Strategy<Value = Value> {
    (
        select(&["Allow", "Deny", "Pass", "Log"]),
        prop_oneof![Just(None), Just(Some(4u8)), Just(Some(6u8))],
        select(&[None, Some("TCP"), Some("UDP"), Some("ICMP")]),
    )
        .prop_flat_map(|(action, family, protocol)| {
            let ported = matches!(protocol, Some("TCP" | "UDP"));
            (entity(family, ported), entity(family, ported)).prop_map(move |(src, dst)| {
                let mut r = Map::new();
                r.insert("action".into(), action.into());
                if let Some(p) = protocol {
                    r.insert("protocol".into(), p.into());
                }
                r.insert("source".into(), src);
                r.insert("destination".into(), dst);
                Value::Object(r)
            })
        })
}

fn rules() -> impl Strategy<Value = Vec<Value>> {
    proptest::collection::vec(rule(), 0..3)
}

fn types() -> impl Strategy<Value = Option<Value>> {
    select(vec![
        None,
        Some(json!(["Ingress"])),
        Some(json!(["Egress"])),
        Some(json!(["Ingress", "Egress"])),
    ])
}

fn namespace() -> impl Strategy<Value = Value> {
    (
        select(&NAMESPACES),
        opt(&["prod", "dev"]),
        opt(&["x", "y"]),
    )
        .prop_map(|(name, env, team)| {
            json!({"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": name, "labels": labels(vec![("env", env), ("team", team)])}})
        })
}

fn service_account() -> impl Strategy<Value = Value> {
    (select(&NAMESPACES), select(&["sa0", "sa1", "default"]), opt(&["x", "y"])).prop_map(
        |(ns, name, role)| {
            json!({"apiVersion": "v1", "kind": "ServiceAccount",
                   "metadata": {"name": name, "namespace": ns, "labels": labels(vec![("role", role)])}})
        },
    )
}

fn pod() -> impl Strategy<Value = Value> {
    (
        select(&NAMESPACES),
        select(&["p0", "p1", "p2", "p3"]),
        endpoint_labels(),
        select(&NODES),
        opt(&["sa0", "sa1"]),
        prop_oneof![10 => Just(false), 1 => Just(true)],
        select(&V4),
        opt(&V6),
        0..3usize,
    )
        .prop_map(
            |(ns, name, labels, node, sa, host_network, v4, v6, ports)| {
                let mut spec = Map::new();
                if let Some(n) = node {
                    spec.insert("nodeName".into(), n.into());
                }
                if let Some(sa) = sa {
                    spec.insert("serviceAccountName".into(), sa.into());
                }
                if host_network {
                    spec.insert("hostNetwork".into(), true.into());
                }
                let ports = match ports {
                    1 => json!([{"name": "http", "containerPort": 80}]),
                    2 => json!([{"name": "http", "containerPort": 8080},
                            {"name": "dns", "containerPort": 53, "protocol": "UDP"}]),
                    _ => json!([]),
                };
                spec.insert("containers".into(), json!([{"name": "c", "ports": ports}]));
                let mut ips = vec![json!({"ip": v4})];
                if let Some(v6) = v6 {
                    ips.push(json!({"ip": v6}));
                }
                json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": name, "namespace": ns, "labels": labels},
                   "spec": spec, "status": {"podIP": v4, "podIPs": ips}})
            },
        )
}

fn workload_endpoint() -> impl Strategy<Value = Value> {
    (
        select(&NAMESPACES),
        select(&["w0", "w1"]),
        endpoint_labels(),
        select(&["node-a", "node-b"]),
        select(&["", "bhw0", "bhw1"]),
        prop_oneof![select(&V4), select(&V6)],
        select(vec![vec![], vec!["custom", "kns.ns0"], vec!["missing"]]),
        select(&["", "sa1"]),
    )
        .prop_map(|(ns, name, labels, node, iface, ip, profiles, sa)| {
            let net = if ip.contains(':') {
                format!("{ip}/128")
            } else {
                format!("{ip}/32")
            };
            json!({"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
                   "metadata": {"name": name, "namespace": ns, "labels": labels},
                   "spec": {"node": node, "interfaceName": iface, "ipNetworks": [net],
                            "orchestrator": "k8s", "profiles": profiles,
                            "serviceAccountName": sa,
                            "ports": [{"name": "http", "protocol": "TCP", "port": 81}]}})
        })
}

fn host_endpoint() -> impl Strategy<Value = Value> {
    (
        select(&["h0", "h1"]),
        endpoint_labels(),
        select(&["node-a", "node-b"]),
        select(&["*", "eth0", "eth1", ""]),
        select(&V4),
        select(vec![
            vec![],
            vec!["custom"],
            vec!["projectcalico-default-allow"],
            vec!["kns.ns0", "custom"],
        ]),
    )
        .prop_map(|(name, labels, node, iface, ip, profiles)| {
            json!({"apiVersion": "projectcalico.org/v3", "kind": "HostEndpoint",
                   "metadata": {"name": name, "labels": labels},
                   "spec": {"node": node, "interfaceName": iface, "expectedIPs": [ip],
                            "profiles": profiles,
                            "ports": [{"name": "http", "protocol": "TCP", "port": 8443}]}})
        })
}

/// Felix's settings for every node, for this one or for another, each setting set or not.
fn felix_configuration() -> impl Strategy<Value = Value> {
    (
        select(&["default", "node.node-a", "node.node-b"]),
        select(vec![None, Some(vec![]), Some(vec![22, 8443])]),
        select(vec![None, Some("Drop"), Some("Accept")]),
    )
        .prop_map(|(name, inbound, action)| {
            let mut spec = json!({"logSeverityScreen": "Info"});
            if let Some(ports) = inbound {
                let ports: Vec<Value> = ports.iter().map(|p| json!({"port": p})).collect();
                spec["failsafeInboundHostPorts"] = ports.into();
            }
            if let Some(action) = action {
                spec["defaultEndpointToHostAction"] = action.into();
            }
            json!({"apiVersion": "projectcalico.org/v3", "kind": "FelixConfiguration",
                   "metadata": {"name": name}, "spec": spec})
        })
}

/// A node's `Node` resource, listing some of the addresses endpoints use: it changes no
/// table (the kernel knows its own addresses), whichever node it names.
fn node() -> impl Strategy<Value = Value> {
    (select(&["node-a", "node-b"]), subset(&V4)).prop_map(|(name, addresses)| {
        let addresses: Vec<Value> = addresses
            .iter()
            .map(|a| json!({"address": a, "type": "InternalIP"}))
            .collect();
        json!({"apiVersion": "projectcalico.org/v3", "kind": "Node",
               "metadata": {"name": name}, "spec": {"addresses": addresses}})
    })
}

fn network_set() -> impl Strategy<Value = Value> {
    (
        prop_oneof![Just(None), select(&NAMESPACES).prop_map(Some)],
        select(&["s0", "s1"]),
        opt(&["yes"]),
        opt(&["a", "b"]),
        subset(&NETS4),
        subset(&NETS6),
    )
        .prop_map(|(ns, name, ext, app, v4, v6)| {
            let nets: Vec<&str> = v4.into_iter().chain(v6).collect();
            let labels = labels(vec![("ext", ext), ("app", app)]);
            match ns {
                Some(ns) => json!({"apiVersion": "projectcalico.org/v3", "kind": "NetworkSet",
                    "metadata": {"name": name, "namespace": ns, "labels": labels},
                    "spec": {"nets": nets}}),
                None => json!({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkSet",
                    "metadata": {"name": name, "labels": labels}, "spec": {"nets": nets}}),
            }
        })
}

fn tier() -> impl Strategy<Value = Value> {
    (
        prop_oneof![4 => select(&["t1", "t2"]), 1 => Just("default")],
        select(&[None, Some(10.0), Some(100.0), Some(2_000_000.0)]),
        select(&["Deny", "Pass"]),
    )
        .prop_map(|(name, order, action)| {
            let mut spec = Map::new();
            if let Some(o) = order {
                spec.insert("order".into(), json!(o));
            }
            spec.insert("defaultAction".into(), action.into());
            json!({"apiVersion": "projectcalico.org/v3", "kind": "Tier",
                   "metadata": {"name": name}, "spec": spec})
        })
}

fn profile() -> impl Strategy<Value = Value> {
    (
        select(&["custom", "kns.ns0", "projectcalico-default-allow"]),
        opt(&["yes", "no"]),
        rules(),
        rules(),
    )
        .prop_map(|(name, prof, ingress, egress)| {
            json!({"apiVersion": "projectcalico.org/v3", "kind": "Profile",
                   "metadata": {"name": name},
                   "spec": {"labelsToApply": labels(vec![("prof", prof)]),
                            "ingress": ingress, "egress": egress}})
        })
}

fn calico_policy() -> impl Strategy<Value = Value> {
    (
        0..4usize,
        select(&NAMESPACES),
        select(&["x0", "x1", "x2"]),
        select(&[None, Some("default"), Some("t1"), Some("t2")]),
        select(&[None, Some(1.0), Some(10.0)]),
        opt(&SELECTORS),
        opt(&NS_SELECTORS),
        types(),
        rules(),
        rules(),
        prop_oneof![8 => Just(None), 1 => Just(Some("Set")), 1 => Just(Some("Delete"))],
        prop_oneof![12 => Just(None), 1 => Just(Some("doNotTrack")), 1 => Just(Some("preDNAT"))],
    )
        .prop_map(
            |(kind, ns, name, tier, order, sel, ns_sel, types, ingress, egress, staged, early)| {
                let global = kind % 2 == 0;
                let staged = if kind >= 2 {
                    staged.or(Some("Set"))
                } else {
                    None
                };
                let mut spec = Map::new();
                if let Some(t) = tier {
                    spec.insert("tier".into(), t.into());
                }
                if staged == Some("Delete") {
                    spec.insert("stagedAction".into(), "Delete".into());
                } else {
                    if let Some(a) = staged {
                        spec.insert("stagedAction".into(), a.into());
                    }
                    if let Some(o) = order {
                        spec.insert("order".into(), json!(o));
                    }
                    if let Some(s) = sel {
                        spec.insert("selector".into(), s.into());
                    }
                    if global && let Some(s) = ns_sel {
                        spec.insert("namespaceSelector".into(), s.into());
                    }
                    if let Some(t) = types {
                        spec.insert("types".into(), t);
                    }
                    spec.insert("ingress".into(), json!(ingress));
                    spec.insert("egress".into(), json!(egress));
                    if global && let Some(flag) = early {
                        spec.insert(flag.into(), true.into());
                        spec.insert("applyOnForward".into(), true.into());
                        if flag == "preDNAT" {
                            // Ingress only.
                            spec.insert("egress".into(), json!([]));
                            spec.insert("types".into(), json!(["Ingress"]));
                        }
                    }
                }
                let kind = match (global, staged.is_some()) {
                    (true, false) => "GlobalNetworkPolicy",
                    (true, true) => "StagedGlobalNetworkPolicy",
                    (false, false) => "NetworkPolicy",
                    (false, true) => "StagedNetworkPolicy",
                };
                let mut meta = json!({"name": name});
                if !global {
                    meta["namespace"] = ns.into();
                }
                json!({"apiVersion": "projectcalico.org/v3", "kind": kind,
                       "metadata": meta, "spec": spec})
            },
        )
}

fn k8s_peer() -> impl Strategy<Value = Value> {
    prop_oneof![
        opt(&["a", "b"]).prop_map(|app| json!({"podSelector": {"matchLabels": labels(vec![("app", app)])}})),
        opt(&["prod", "dev"]).prop_map(|env| json!({"namespaceSelector": {"matchLabels": labels(vec![("env", env)])},
                                                     "podSelector": {"matchLabels": {"role": "db"}}})),
        Just(json!({"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.0.0/24"]}})),
        Just(json!({"ipBlock": {"cidr": "fd00::/64"}})),
    ]
}

fn k8s_ports() -> impl Strategy<Value = Value> {
    select(vec![
        json!([]),
        json!([{"port": "http"}]),
        json!([{"port": 80, "protocol": "TCP"}, {"port": "dns", "protocol": "UDP"}]),
        json!([{"port": 8000, "endPort": 8080}]),
    ])
}

fn k8s_policy() -> impl Strategy<Value = Value> {
    (
        select(&NAMESPACES),
        select(&["k0", "k1"]),
        opt(&["a", "b"]),
        select(vec![json!(["Ingress"]), json!(["Egress"]), json!(["Ingress", "Egress"])]),
        proptest::collection::vec((proptest::collection::vec(k8s_peer(), 0..3), k8s_ports()), 0..3),
        proptest::collection::vec((proptest::collection::vec(k8s_peer(), 0..3), k8s_ports()), 0..3),
        prop_oneof![6 => Just(None), 1 => Just(Some("Set")), 1 => Just(Some("Delete"))],
    )
        .prop_map(|(ns, name, app, types, ingress, egress, staged)| {
            let ingress: Vec<Value> = ingress
                .into_iter()
                .map(|(from, ports)| json!({"from": from, "ports": ports}))
                .collect();
            let egress: Vec<Value> = egress
                .into_iter()
                .map(|(to, ports)| json!({"to": to, "ports": ports}))
                .collect();
            match staged {
                Some("Delete") => json!({"apiVersion": "projectcalico.org/v3",
                    "kind": "StagedKubernetesNetworkPolicy",
                    "metadata": {"name": name, "namespace": ns},
                    "spec": {"stagedAction": "Delete"}}),
                staged => {
                    let mut spec = json!({"podSelector": {"matchLabels": labels(vec![("app", app)])},
                                          "policyTypes": types, "ingress": ingress, "egress": egress});
                    let (api, kind) = match staged {
                        Some(_) => ("projectcalico.org/v3", "StagedKubernetesNetworkPolicy"),
                        None => ("networking.k8s.io/v1", "NetworkPolicy"),
                    };
                    if staged.is_some() {
                        spec["stagedAction"] = "Set".into();
                    }
                    json!({"apiVersion": api, "kind": kind,
                           "metadata": {"name": name, "namespace": ns}, "spec": spec})
                }
            }
        })
}

#[derive(Debug, Clone)]
enum Op {
    Upsert(Value),
    /// Deletes the n-th resource of the store (modulo its size).
    Delete(usize),
    /// The node's interfaces now hold these addresses.
    Interfaces(Vec<(&'static str, &'static str)>),
    Flush,
}

fn op() -> impl Strategy<Value = Op> {
    let upsert = prop_oneof![
        2 => namespace(),
        1 => service_account(),
        5 => pod(),
        2 => workload_endpoint(),
        2 => host_endpoint(),
        2 => network_set(),
        2 => tier(),
        1 => profile(),
        5 => calico_policy(),
        2 => k8s_policy(),
        1 => felix_configuration(),
        1 => node(),
    ];
    prop_oneof![
        10 => upsert.prop_map(Op::Upsert),
        3 => any::<usize>().prop_map(Op::Delete),
        1 => proptest::collection::vec((select(&["eth0", "eth1", "bh0"]), select(&V4)), 0..4)
            .prop_map(Op::Interfaces),
        2 => Just(Op::Flush),
    ]
}

fn run(ops: &[Op], check_every_flush: bool) {
    let mut h = Harness::default();
    for (i, op) in ops.iter().enumerate() {
        match op {
            Op::Upsert(doc) => h.upsert(resource(&doc.to_string())),
            Op::Delete(n) => {
                if h.store.is_empty() {
                    continue;
                }
                let key: ResourceKey = h
                    .store
                    .keys()
                    .nth(n % h.store.len())
                    .cloned()
                    .unwrap_or_else(|| unreachable!());
                h.delete(&key);
            }
            Op::Interfaces(addrs) => {
                let mut interfaces = HostInterfaces::new();
                for (iface, ip) in addrs {
                    let ip = ip.parse().unwrap_or_else(|_| unreachable!());
                    interfaces.entry(iface.to_string()).or_default().insert(ip);
                }
                h.set_interfaces(interfaces);
            }
            Op::Flush => {
                if check_every_flush {
                    h.check(&format!("after op {i}"));
                }
            }
        }
    }
    h.check("at the end");
    // Deleting everything, in store order, empties the table back to the empty cluster's.
    let keys: Vec<ResourceKey> = h.store.keys().cloned().collect();
    for k in keys.iter().rev() {
        h.apply(Update::Delete(k.clone()));
    }
    h.check("after deleting everything");
    let stats = h.graph.stats();
    assert_eq!(
        (
            stats.items,
            stats.policies,
            stats.policy_chains,
            stats.ip_set_sources
        ),
        (0, 0, 0, 0),
        "{stats:?}"
    );
    assert!(h.graph.errors().is_empty() || keys.iter().all(|k| k.kind != Kind::Tier));
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    })]

    /// Random interleavings of upserts, deletes and flushes; checked at every flush.
    #[test]
    fn any_sequence_ends_in_the_from_scratch_table(ops in proptest::collection::vec(op(), 1..60)) {
        run(&ops, true);
    }

    /// Long sequences flushed only at the end: coalescing must not lose a change.
    #[test]
    fn coalesced_updates_end_in_the_from_scratch_table(ops in proptest::collection::vec(op(), 20..120)) {
        run(&ops, false);
    }
}
