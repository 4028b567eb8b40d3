//! Host endpoints: the base chains of a node with host endpoints (failsafe ports, then
//! each host endpoint's untracked, pre-DNAT and normal chains) and their names.

use bulkhead_engine::compile::PolicyClass;
use bulkhead_engine::failsafe::FailsafePort;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::{CT, LocalEndpoint, ND_ACCEPT, RenderConfig, clear_marks, direction, regular};
use crate::rules::{MARK_ACCEPT, proto_name};
use crate::table::{Chain, Hook};

/// The policy classes a host endpoint has besides the normal one, each with its
/// direction: untracked both ways, pre-DNAT ingress only. Each has a chain
/// ([`early_chain`](super::early_chain)) that a base chain before the filter hooks runs.
pub const EARLY_CLASSES: [(PolicyClass, bool); 3] = [
    (PolicyClass::Untracked, true),
    (PolicyClass::Untracked, false),
    (PolicyClass::PreDnat, true),
];

/// A host endpoint's chain for one class and direction: `h.<name>.in|out` (normal),
/// `h.<name>.untracked.in|out`, `h.<name>.prednat.in`, `h.<name>.fwd.in|out` (forwarded
/// traffic, [`forwarded_chain`](super::forwarded_chain)).
pub fn host_chain_name(name: &str, class: PolicyClass, ingress: bool) -> String {
    let dir = direction(ingress);
    match class {
        PolicyClass::Normal => format!("h.{name}.{dir}"),
        PolicyClass::Untracked => format!("h.{name}.untracked.{dir}"),
        PolicyClass::PreDnat => format!("h.{name}.prednat.{dir}"),
        PolicyClass::Forward => format!("h.{name}.fwd.{dir}"),
    }
}

/// The chain `forward` jumps to first on a node with host endpoints: the `applyOnForward`
/// chain of the host endpoint a forwarded packet came in through.
pub const FROM_HOST: &str = "from_host";
/// The chain `to_workload` goes to last on a node with host endpoints: the
/// `applyOnForward` chain of the host endpoint a forwarded packet leaves through.
pub const TO_HOST: &str = "to_host";

/// A node's interfaces and the addresses each holds.
pub type HostInterfaces = BTreeMap<String, BTreeSet<IpAddr>>;

/// Which host endpoint governs which interface ([`resolve_host_endpoints`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostDispatch<'a> {
    /// Interface → the endpoint that governs it.
    pub interfaces: BTreeMap<String, &'a LocalEndpoint>,
    /// The `*` endpoint: every other interface (but a workload's).
    pub all: Option<&'a LocalEndpoint>,
}

impl HostDispatch<'_> {
    /// (interface, endpoint name) pairs, by interface, the `*` endpoint last as `*`.
    pub fn placement(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .interfaces
            .iter()
            .map(|(iface, h)| (iface.clone(), h.name.clone()))
            .collect();
        out.extend(self.all.map(|h| ("*".to_string(), h.name.clone())));
        out
    }
}

/// Resolves host endpoints to interfaces as Felix does: one endpoint governs an
/// interface, the alphabetically first of those that name it in `interfaceName` or, with
/// no `interfaceName`, expect one of the addresses it holds
/// (`config.host_interfaces`); the first `*` endpoint governs every other interface. An
/// endpoint without `interfaceName` whose addresses no interface holds governs nothing.
/// Workload interfaces and `lo` are never host endpoints.
pub fn resolve_host_endpoints<'a>(
    hosts: &[&'a LocalEndpoint],
    config: &RenderConfig,
) -> HostDispatch<'a> {
    let mut ordered: Vec<&'a LocalEndpoint> = hosts.to_vec();
    ordered.sort_by(|a, b| a.name.cmp(&b.name));
    let mut dispatch = HostDispatch {
        interfaces: BTreeMap::new(),
        all: None,
    };
    let eligible = |iface: &str| iface != "lo" && !iface.starts_with(&config.workload_prefix);
    for h in ordered {
        match h.interface.as_str() {
            "*" => {
                dispatch.all.get_or_insert(h);
            }
            "" => {
                for (iface, addrs) in &config.host_interfaces {
                    if eligible(iface) && h.expected_ips.iter().any(|ip| addrs.contains(ip)) {
                        dispatch.interfaces.entry(iface.clone()).or_insert(h);
                    }
                }
            }
            named if eligible(named) => {
                dispatch.interfaces.entry(named.to_string()).or_insert(h);
            }
            _ => {}
        }
    }
    dispatch
}

/// The names of the chains [`host_base_chains`] makes: the failsafe chains, the base
/// chains, and the dispatch of forwarded traffic.
pub const HOST_BASE_CHAINS: [&str; 10] = [
    "failsafe.in",
    "failsafe.out",
    "raw_prerouting",
    "raw_output",
    "mangle_prerouting",
    "input",
    "output",
    "mangle_forwarded",
    FROM_HOST,
    TO_HOST,
];

/// The base chains of a node with host endpoints, each running the failsafe chain of its
/// direction and then the chain of its class of the host endpoint that governs the
/// packet's interface (`dispatch`, from [`resolve_host_endpoints`]):
/// - `raw_prerouting` / `raw_output` (before conntrack): untracked policies;
/// - `mangle_prerouting` (after conntrack, before DNAT): pre-DNAT policies;
/// - `input` / `output`: the normal policies and profiles.
///
/// A packet an untracked or pre-DNAT policy allowed carries the accept mark, which the
/// later hooks honour. Traffic between the host and its own workloads (a workload-prefixed
/// interface) skips every host endpoint chain, as in Calico: a workload's egress policy
/// alone judges its traffic to the host (`workload_input`), and the host's traffic to its
/// workloads is not policed. Forwarded packets (`fib daddr type != local`) meet the raw
/// failsafe rules and the untracked ingress policies of the host endpoint they come in by,
/// as every packet on its interface does (raw output never sees them, so no untracked
/// egress policy); they skip the failsafe ports of the filter hooks; `mangle_forwarded`
/// runs the pre-DNAT policies of the host endpoint they came in through, and [`FROM_HOST`]
/// and [`TO_HOST`] dispatch them to
/// the `applyOnForward` chains of the host endpoints they cross (a `*` endpoint: any
/// interface but a workload's, `workload_prefix`). The raw chains also let the replies of
/// failsafe connections by (source port), which conntrack would have accepted as
/// established.
pub fn host_base_chains(
    dispatch: &HostDispatch<'_>,
    config: &RenderConfig,
) -> Vec<(String, Chain)> {
    let workload_prefix = &config.workload_prefix;
    // Failsafe entries, matched by the port of `field` and, with a net, the remote
    // address: the source of what comes in (`incoming`), the destination of what goes out.
    let ports = |ports: &[FailsafePort], field: &str, incoming: bool| -> Vec<String> {
        ports
            .iter()
            .map(|e| {
                let proto = proto_name(e.protocol);
                let remote = e.net.map(|net| {
                    let family = if net.addr().is_ipv4() { "ip" } else { "ip6" };
                    let side = if incoming { "saddr" } else { "daddr" };
                    format!(" {family} {side} {}", net.trunc())
                });
                let remote = remote.unwrap_or_default();
                format!("meta l4proto {proto} th {field} {}{remote} accept", e.port)
            })
            .collect()
    };
    let accepted = format!("meta mark & {MARK_ACCEPT:#x} == {MARK_ACCEPT:#x} accept");
    // Traffic between the host and its own workloads: the host's policies do not apply
    // (`workload_input` runs the workload's egress on the way in).
    let from_workload = format!("iifname \"{workload_prefix}*\" accept");
    let to_workload = format!("oifname \"{workload_prefix}*\" accept");
    let ct = || CT.iter().map(|s| s.to_string());

    let mut raw_in = vec![
        clear_marks(),
        "iifname \"lo\" accept".into(),
        ND_ACCEPT.into(),
        from_workload.clone(),
    ];
    raw_in.extend(ports(
        &config.host_defaults.failsafe.outbound,
        "sport",
        true,
    ));
    raw_in.push("jump failsafe.in".into());
    let mut raw_out = vec![
        clear_marks(),
        "oifname \"lo\" accept".into(),
        ND_ACCEPT.into(),
        to_workload.clone(),
    ];
    raw_out.extend(ports(
        &config.host_defaults.failsafe.inbound,
        "sport",
        false,
    ));
    raw_out.push("jump failsafe.out".into());
    let mut mangle_in = vec![
        CT[0].to_string(),
        accepted.clone(),
        "iifname \"lo\" accept".into(),
        ND_ACCEPT.into(),
        "fib daddr type != local goto mangle_forwarded".into(),
        from_workload.clone(),
        "jump failsafe.in".into(),
    ];
    let mut mangle_forwarded = Vec::new();
    let mut from_host = Vec::new();
    // From `workload_input` there is no output interface: nothing to do here.
    let mut to_host = vec!["oif 0 return".to_string()];
    let mut input: Vec<String> = ct().collect();
    input.extend([
        accepted.clone(),
        "iifname \"lo\" accept".to_string(),
        ND_ACCEPT.to_string(),
        from_workload,
        "jump failsafe.in".to_string(),
    ]);
    let mut output: Vec<String> = ct().collect();
    output.extend([
        accepted,
        "oifname \"lo\" accept".to_string(),
        ND_ACCEPT.to_string(),
        to_workload,
        "jump failsafe.out".to_string(),
    ]);
    // Each interface goes to the chains of the one host endpoint that governs it, the
    // others to those of the `*` endpoint: `goto`, so a chain that decides nothing (an
    // untracked or pre-DNAT chain without a verdict) ends the base chain rather than
    // falling through to another endpoint's.
    let routes = dispatch
        .interfaces
        .iter()
        .map(|(iface, h)| (Some(iface.as_str()), *h))
        .chain(dispatch.all.map(|h| (None, h)));
    for (iface, h) in routes {
        let goto = |ingress: bool, class: PolicyClass| {
            let chain = host_chain_name(&h.name, class, ingress);
            match (iface, ingress) {
                (None, _) => format!("goto {chain}"),
                (Some(i), true) => format!("iifname \"{i}\" goto {chain}"),
                (Some(i), false) => format!("oifname \"{i}\" goto {chain}"),
            }
        };
        // Untracked policies do not apply to a `*` endpoint (Calico); its untracked chains
        // hold none, and the raw hooks do not go to them.
        if iface.is_some() {
            raw_in.push(goto(true, PolicyClass::Untracked));
            raw_out.push(goto(false, PolicyClass::Untracked));
        }
        mangle_in.push(goto(true, PolicyClass::PreDnat));
        input.push(goto(true, PolicyClass::Normal));
        output.push(goto(false, PolicyClass::Normal));
        // Forwarded traffic: a `*` endpoint stands for every host interface, which a
        // workload's is not.
        let crossing = |ingress: bool, class: PolicyClass| {
            let chain = host_chain_name(&h.name, class, ingress);
            let field = if ingress { "iifname" } else { "oifname" };
            match iface {
                None => format!("{field} != \"{workload_prefix}*\" goto {chain}"),
                Some(i) => format!("{field} \"{i}\" goto {chain}"),
            }
        };
        mangle_forwarded.push(crossing(true, PolicyClass::PreDnat));
        from_host.push(crossing(true, PolicyClass::Forward));
        to_host.push(crossing(false, PolicyClass::Forward));
    }
    let base = |hook: Hook, rules: Vec<String>| Chain {
        hook: Some(hook),
        rules,
    };
    let [
        fs_in,
        fs_out,
        raw_pre,
        raw_output,
        mangle_pre,
        input_name,
        output_name,
        mangle_fwd,
        from_host_name,
        to_host_name,
    ] = HOST_BASE_CHAINS;
    vec![
        (
            fs_in.into(),
            regular(ports(&config.host_defaults.failsafe.inbound, "dport", true)),
        ),
        (
            fs_out.into(),
            regular(ports(
                &config.host_defaults.failsafe.outbound,
                "dport",
                false,
            )),
        ),
        (raw_pre.into(), base(Hook::RawPrerouting, raw_in)),
        (raw_output.into(), base(Hook::RawOutput, raw_out)),
        (mangle_pre.into(), base(Hook::ManglePrerouting, mangle_in)),
        (input_name.into(), base(Hook::Input, input)),
        (output_name.into(), base(Hook::Output, output)),
        (mangle_fwd.into(), regular(mangle_forwarded)),
        (from_host_name.into(), regular(from_host)),
        (to_host_name.into(), regular(to_host)),
    ]
}
