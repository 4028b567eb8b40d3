//! Host endpoints: the base chains of a node with host endpoints (failsafe ports, then
//! each host endpoint's untracked, pre-DNAT and normal chains) and their names.

use bulkhead_engine::compile::PolicyClass;
use bulkhead_engine::eval::{FAILSAFE_INBOUND, FAILSAFE_OUTBOUND};

use super::{CT, LocalEndpoint, clear_marks, direction, regular};
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
/// `h.<name>.untracked.in|out`, `h.<name>.prednat.in`.
pub fn host_chain_name(name: &str, class: PolicyClass, ingress: bool) -> String {
    let dir = direction(ingress);
    match class {
        PolicyClass::Normal => format!("h.{name}.{dir}"),
        PolicyClass::Untracked => format!("h.{name}.untracked.{dir}"),
        PolicyClass::PreDnat => format!("h.{name}.prednat.{dir}"),
    }
}

/// The names of the base chains [`host_base_chains`] makes, and of the failsafe chains.
pub const HOST_BASE_CHAINS: [&str; 7] = [
    "failsafe.in",
    "failsafe.out",
    "raw_prerouting",
    "raw_output",
    "mangle_prerouting",
    "input",
    "output",
];

/// The base chains of a node with host endpoints, each running the failsafe chain of its
/// direction and then every host endpoint's chain of its class (named interfaces first,
/// then `*`, otherwise in the given order):
/// - `raw_prerouting` / `raw_output` (before conntrack): untracked policies;
/// - `mangle_prerouting` (after conntrack, before DNAT): pre-DNAT policies;
/// - `input` / `output`: the normal policies and profiles.
///
/// A packet an untracked or pre-DNAT policy allowed carries the accept mark, which the
/// later hooks honour. Host endpoint policy governs traffic to and from this host: the
/// prerouting chains let forwarded packets by (`fib daddr type != local`), as `input`
/// never sees them. The raw chains also let the replies of failsafe connections by
/// (source port), which conntrack would have accepted as established.
pub fn host_base_chains(hosts: &[&LocalEndpoint]) -> Vec<(String, Chain)> {
    let ports = |ports: &[(bulkhead_api::values::Protocol, u16)], field: &str| -> Vec<String> {
        ports
            .iter()
            .map(|(p, n)| format!("meta l4proto {} th {field} {n} accept", proto_name(*p)))
            .collect()
    };
    let accepted = format!("meta mark & {MARK_ACCEPT:#x} == {MARK_ACCEPT:#x} accept");
    let local_only = "fib daddr type != local accept".to_string();
    // Neighbour discovery keeps IPv6 working whatever the policy says.
    let nd = "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, nd-router-advert } accept";
    let ct = || CT.iter().map(|s| s.to_string());

    let mut raw_in = vec![
        clear_marks(),
        "iifname \"lo\" accept".into(),
        nd.into(),
        local_only.clone(),
    ];
    raw_in.extend(ports(FAILSAFE_OUTBOUND, "sport"));
    raw_in.push("jump failsafe.in".into());
    let mut raw_out = vec![clear_marks(), "oifname \"lo\" accept".into(), nd.into()];
    raw_out.extend(ports(FAILSAFE_INBOUND, "sport"));
    raw_out.push("jump failsafe.out".into());
    let mut mangle_in = vec![
        CT[0].to_string(),
        accepted.clone(),
        "iifname \"lo\" accept".into(),
        nd.into(),
        local_only,
        "jump failsafe.in".into(),
    ];
    let mut input: Vec<String> = ct().collect();
    input.extend([
        accepted.clone(),
        "iifname \"lo\" accept".to_string(),
        nd.to_string(),
        "jump failsafe.in".to_string(),
    ]);
    let mut output: Vec<String> = ct().collect();
    output.extend([
        accepted,
        "oifname \"lo\" accept".to_string(),
        nd.to_string(),
        "jump failsafe.out".to_string(),
    ]);
    // Named interfaces first, then the catch-all `*` endpoint.
    let mut ordered: Vec<&&LocalEndpoint> = hosts.iter().collect();
    ordered.sort_by_key(|h| h.interface == "*");
    for h in ordered {
        let any = h.interface == "*" || h.interface.is_empty();
        let jump = |ingress: bool, class: PolicyClass| {
            let chain = host_chain_name(&h.name, class, ingress);
            match (any, ingress) {
                (true, _) => format!("jump {chain}"),
                (false, true) => format!("iifname \"{}\" jump {chain}", h.interface),
                (false, false) => format!("oifname \"{}\" jump {chain}", h.interface),
            }
        };
        raw_in.push(jump(true, PolicyClass::Untracked));
        raw_out.push(jump(false, PolicyClass::Untracked));
        mangle_in.push(jump(true, PolicyClass::PreDnat));
        input.push(jump(true, PolicyClass::Normal));
        output.push(jump(false, PolicyClass::Normal));
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
    ] = HOST_BASE_CHAINS;
    vec![
        (fs_in.into(), regular(ports(FAILSAFE_INBOUND, "dport"))),
        (fs_out.into(), regular(ports(FAILSAFE_OUTBOUND, "dport"))),
        (raw_pre.into(), base(Hook::RawPrerouting, raw_in)),
        (raw_output.into(), base(Hook::RawOutput, raw_out)),
        (mangle_pre.into(), base(Hook::ManglePrerouting, mangle_in)),
        (input_name.into(), base(Hook::Input, input)),
        (output_name.into(), base(Hook::Output, output)),
    ]
}
