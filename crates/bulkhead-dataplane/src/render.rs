//! The engine's model for one node's endpoints → the node's table.
//!
//! Layout (docs/dataplane.md has the picture):
//! - `forward` dispatches workload traffic through two verdict maps: `wl_from`
//!   (interface → the workload's egress chain) and `wl_to` (→ its ingress chain). Traffic
//!   on a workload-prefixed interface that is not in `wl_known` is dropped (fail closed).
//! - `input`/`output` run the failsafe chains, then the host endpoint's chains.
//! - Every chain starts after `ct state established,related accept; ct state invalid
//!   drop`: policy runs once per connection.
//! - An endpoint chain walks its tiers with Calico's mark protocol: each policy chain is
//!   jumped to unless the tier was already passed; a policy's Allow sets the accept mark
//!   and returns, Pass sets the pass mark and returns, Deny drops. End of tier drops
//!   unless the tier's default is Pass. Then the profiles, then drop.
//! - Policy and profile chains are shared by every endpoint that uses them.

use bulkhead_api::values::TierDefaultAction;
use bulkhead_engine::compile::{Policy, PolicyClass, Profile};
use bulkhead_engine::eval::{FAILSAFE_INBOUND, FAILSAFE_OUTBOUND};
use bulkhead_engine::{Cluster, EndpointKind, Mode, PolicyRef};

use crate::rules::{MARK_ACCEPT, MARK_PASS, RuleRenderer, proto_name};
use crate::table::{Chain, Hook, Set, SetKind, Table, VerdictMap};

/// An endpoint enforced on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalEndpoint {
    /// Workload or host.
    pub kind: EndpointKind,
    /// Namespace (workloads).
    pub namespace: Option<String>,
    /// Pod, WorkloadEndpoint or HostEndpoint name.
    pub name: String,
    /// The node-side interface of a workload; for a host endpoint, its interface or `*`.
    pub interface: String,
}

/// How this node names things.
#[derive(Debug, Clone)]
pub struct RenderConfig {
    /// Prefix of every workload interface on the node (fail-closed dispatch).
    pub workload_prefix: String,
}

impl Default for RenderConfig {
    fn default() -> Self {
        RenderConfig {
            workload_prefix: "bh".into(),
        }
    }
}

const CT: [&str; 2] = [
    "ct state established,related accept",
    "ct state invalid drop",
];

/// Renders the table that enforces `cluster` for the `local` endpoints.
pub fn render(cluster: &Cluster, local: &[LocalEndpoint], config: &RenderConfig) -> Table {
    let mut table = Table::default();
    let workloads: Vec<&LocalEndpoint> = local
        .iter()
        .filter(|e| e.kind == EndpointKind::Workload)
        .collect();
    let hosts: Vec<&LocalEndpoint> = local
        .iter()
        .filter(|e| e.kind == EndpointKind::Host)
        .collect();

    let prefix = &config.workload_prefix;
    let mut forward: Vec<String> = CT.iter().map(|s| s.to_string()).collect();
    forward.push(format!("iifname \"{prefix}*\" iifname != @wl_known drop"));
    forward.push(format!("oifname \"{prefix}*\" oifname != @wl_known drop"));
    forward.push("iifname vmap @wl_from".into());
    forward.push("oifname vmap @wl_to".into());
    table.chains.insert(
        "forward".into(),
        Chain {
            hook: Some(Hook::Forward),
            rules: forward,
        },
    );
    let mut known = Set {
        kind: SetKind::Ifname,
        elements: Default::default(),
    };
    let mut from = VerdictMap::default();
    let mut to = VerdictMap::default();
    for w in &workloads {
        let Some(index) =
            cluster.endpoint_index(EndpointKind::Workload, w.namespace.as_deref(), &w.name)
        else {
            // Registered on the node but unknown to the model: the interface is not in
            // wl_known, so its traffic is dropped.
            continue;
        };
        let iface = format!("\"{}\"", w.interface);
        known.elements.insert(iface.clone());
        let out_chain = format!("w.{}.out", w.interface);
        let in_chain = format!("w.{}.in", w.interface);
        let out_rules = endpoint_chain(cluster, &mut table, index, false, "return");
        let in_rules = endpoint_chain(cluster, &mut table, index, true, "accept");
        table.chains.insert(
            out_chain.clone(),
            Chain {
                hook: None,
                rules: out_rules,
            },
        );
        table.chains.insert(
            in_chain.clone(),
            Chain {
                hook: None,
                rules: in_rules,
            },
        );
        from.elements
            .insert(iface.clone(), format!("jump {out_chain}"));
        to.elements.insert(iface, format!("jump {in_chain}"));
    }
    table.sets.insert("wl_known".into(), known);
    table.maps.insert("wl_from".into(), from);
    table.maps.insert("wl_to".into(), to);

    if !hosts.is_empty() {
        host_chains(cluster, &mut table, &hosts);
    }
    table
}

fn host_chains(cluster: &Cluster, table: &mut Table, hosts: &[&LocalEndpoint]) {
    let failsafe = |ports: &[(bulkhead_api::values::Protocol, u16)]| -> Vec<String> {
        ports
            .iter()
            .map(|(p, n)| format!("meta l4proto {} th dport {n} accept", proto_name(*p)))
            .collect()
    };
    table.chains.insert(
        "failsafe.in".into(),
        Chain {
            hook: None,
            rules: failsafe(FAILSAFE_INBOUND),
        },
    );
    table.chains.insert(
        "failsafe.out".into(),
        Chain {
            hook: None,
            rules: failsafe(FAILSAFE_OUTBOUND),
        },
    );
    // Neighbour discovery keeps IPv6 working whatever the policy says.
    let nd = "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, nd-router-advert } accept";
    let mut input: Vec<String> = CT.iter().map(|s| s.to_string()).collect();
    input.extend([
        "iifname \"lo\" accept".to_string(),
        nd.to_string(),
        "jump failsafe.in".to_string(),
    ]);
    let mut output: Vec<String> = CT.iter().map(|s| s.to_string()).collect();
    output.extend([
        "oifname \"lo\" accept".to_string(),
        nd.to_string(),
        "jump failsafe.out".to_string(),
    ]);
    // Named interfaces first, then the catch-all `*` endpoint.
    let mut ordered: Vec<&&LocalEndpoint> = hosts.iter().collect();
    ordered.sort_by_key(|h| h.interface == "*");
    for h in ordered {
        let Some(index) = cluster.endpoint_index(EndpointKind::Host, None, &h.name) else {
            continue;
        };
        let in_chain = format!("h.{}.in", h.name);
        let out_chain = format!("h.{}.out", h.name);
        let in_rules = endpoint_chain(cluster, table, index, true, "accept");
        let out_rules = endpoint_chain(cluster, table, index, false, "accept");
        table.chains.insert(
            in_chain.clone(),
            Chain {
                hook: None,
                rules: in_rules,
            },
        );
        table.chains.insert(
            out_chain.clone(),
            Chain {
                hook: None,
                rules: out_rules,
            },
        );
        if h.interface == "*" || h.interface.is_empty() {
            input.push(format!("jump {in_chain}"));
            output.push(format!("jump {out_chain}"));
        } else {
            input.push(format!("iifname \"{}\" jump {in_chain}", h.interface));
            output.push(format!("oifname \"{}\" jump {out_chain}", h.interface));
        }
    }
    table.chains.insert(
        "input".into(),
        Chain {
            hook: Some(Hook::Input),
            rules: input,
        },
    );
    table.chains.insert(
        "output".into(),
        Chain {
            hook: Some(Hook::Output),
            rules: output,
        },
    );
}

/// The rules of one endpoint's chain for one direction. `allow` is the verdict once the
/// packet is allowed: `accept`, or `return` where the other side still has to be checked.
fn endpoint_chain(
    cluster: &Cluster,
    table: &mut Table,
    index: usize,
    ingress: bool,
    allow: &str,
) -> Vec<String> {
    let clear_all = format!(
        "meta mark set meta mark & {:#x}",
        !(MARK_ACCEPT | MARK_PASS)
    );
    let clear_pass = format!("meta mark set meta mark & {:#x}", !MARK_PASS);
    let accepted = format!("meta mark & {MARK_ACCEPT:#x} == {MARK_ACCEPT:#x} {allow}");
    let not_passed = format!("meta mark & {MARK_PASS:#x} == 0x0");
    let mut rules = vec![clear_all];
    for view in cluster.endpoint_tiers(index, Mode::Enforced, PolicyClass::Normal, ingress) {
        for (i, policy) in view.policies.iter().enumerate() {
            let chain = policy_chain(cluster, table, policy, ingress);
            let guard = if i == 0 {
                String::new()
            } else {
                format!("{not_passed} ")
            };
            rules.push(format!("{guard}jump {chain}"));
            rules.push(accepted.clone());
        }
        if view.tier.default_action == TierDefaultAction::Deny {
            rules.push(format!(
                "{not_passed} drop comment \"end of tier {}\"",
                view.tier.name
            ));
        }
        rules.push(clear_pass.clone());
    }
    let Some(endpoint) = cluster.endpoint(index) else {
        rules.push("drop".into());
        return rules;
    };
    for name in &endpoint.profiles {
        match cluster.profile(name) {
            Some(profile) => {
                let chain = profile_chain(cluster, table, profile, ingress);
                rules.push(format!("jump {chain}"));
                rules.push(accepted.clone());
            }
            None => rules.push(format!("drop comment \"profile {name} does not exist\"")),
        }
    }
    rules.push("drop comment \"no profile matched\"".into());
    rules
}

fn direction(ingress: bool) -> &'static str {
    if ingress { "in" } else { "out" }
}

fn policy_chain(cluster: &Cluster, table: &mut Table, policy: &Policy, ingress: bool) -> String {
    let name = format!("p.{}.{}", chain_id(&policy.id), direction(ingress));
    if table.chains.contains_key(&name) {
        return name;
    }
    let allow = format!("meta mark set meta mark | {MARK_ACCEPT:#x} return");
    let pass = format!("meta mark set meta mark | {MARK_PASS:#x} return");
    let rules = if ingress {
        &policy.ingress
    } else {
        &policy.egress
    };
    let mut out = Vec::new();
    let mut r = RuleRenderer::new(cluster, table);
    for (i, rule) in rules.iter().enumerate() {
        out.extend(r.render(
            rule,
            &allow,
            &pass,
            &format!("{} rule {i}", chain_id(&policy.id)),
        ));
    }
    table.chains.insert(
        name.clone(),
        Chain {
            hook: None,
            rules: out,
        },
    );
    name
}

fn profile_chain(cluster: &Cluster, table: &mut Table, profile: &Profile, ingress: bool) -> String {
    let name = format!("r.{}.{}", profile.name, direction(ingress));
    if table.chains.contains_key(&name) {
        return name;
    }
    let allow = format!("meta mark set meta mark | {MARK_ACCEPT:#x} return");
    let rules = if ingress {
        &profile.ingress
    } else {
        &profile.egress
    };
    let mut out = Vec::new();
    let mut r = RuleRenderer::new(cluster, table);
    for (i, rule) in rules.iter().enumerate() {
        // Pass in a profile moves on to the next profile, as in Calico's dataplane.
        out.extend(r.render(
            rule,
            &allow,
            "return",
            &format!("pro:{} rule {i}", profile.name),
        ));
    }
    table.chains.insert(
        name.clone(),
        Chain {
            hook: None,
            rules: out,
        },
    );
    name
}

/// `gnp.name`, `np.ns/name`, `knp.ns/name`: the policy's identity in chain names.
fn chain_id(id: &PolicyRef) -> String {
    match &id.namespace {
        Some(ns) => format!("{}.{ns}/{}", id.kind.short_name(), id.name),
        None => format!("{}.{}", id.kind.short_name(), id.name),
    }
}
