//! The engine's model for one node's endpoints → the node's table.
//!
//! Layout (docs/dataplane.md has the picture):
//! - `forward` dispatches workload traffic through two verdict maps: `wl_from`
//!   (interface → the workload's egress chain, which goes on to `to_workload` if it
//!   allows) and `wl_to` (→ its ingress chain). Traffic on a workload-prefixed interface
//!   that neither map holds is dropped (fail closed).
//! - `input`/`output` run the failsafe chains, then the host endpoint's chains; before
//!   them, `raw_prerouting`/`raw_output` run host endpoints' untracked policies and
//!   `mangle_prerouting` their pre-DNAT policies ([`host_base_chains`]).
//! - Every chain starts after `ct state established,related accept; ct state invalid
//!   drop`: policy runs once per connection.
//! - An endpoint chain with two or more policies first dispatches on protocol and
//!   destination port ([`crate::dispatch`]).
//! - An endpoint chain walks its tiers with Calico's mark protocol: each policy chain is
//!   jumped to unless the tier was already passed; a policy's Allow sets the accept mark
//!   and returns, Pass sets the pass mark and returns, Deny drops. End of tier drops
//!   unless the tier's default is Pass. Then the profiles, then drop.
//! - Policy and profile chains are shared by every endpoint that uses them.
//!
//! [`render`] computes the table from scratch. Its pieces are public so that
//! `bulkhead-calc` maintains the same table incrementally with the same code: every
//! chain's text comes from [`dispatch_chains`], [`endpoint_chains`], [`policy_chain`],
//! [`profile_chain`] and [`host_base_chains`]; set members from the rule renderer's
//! formatting functions. Only *which* pieces exist and the members of sets are computed
//! differently (here by scanning the [`Cluster`]).

use std::net::IpAddr;

use bulkhead_api::Resource;
use bulkhead_api::values::Action;
use bulkhead_api::values::TierDefaultAction;
use bulkhead_engine::compile::{Entity, Policy, PolicyClass, Profile, Rule};
use bulkhead_engine::host_defaults::HostDefaults;
use bulkhead_engine::{Cluster, EndpointKind, Mode, Tier};

use crate::dispatch::{self, Reach};
use crate::naming::workload_interface;
use crate::rules::{MARK_ACCEPT, MARK_PASS, SetRequests, request_set};
use crate::table::{Chain, Hook, Table, VerdictMap};
use crate::tag::{TagVerdict, TaggedRule, Tagging};

mod host;
mod policy;
#[cfg(test)]
mod tests;

pub use host::{
    EARLY_CLASSES, FROM_HOST, HOST_BASE_CHAINS, HostDispatch, HostInterfaces, TO_HOST,
    host_base_chains, host_chain_name, resolve_host_endpoints,
};
pub use policy::{
    policy_chain, policy_chain_name, policy_chain_names, policy_reach, profile_chain,
    profile_chain_name,
};

/// An endpoint enforced on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalEndpoint {
    /// Workload or host.
    pub kind: EndpointKind,
    /// Namespace (workloads).
    pub namespace: Option<String>,
    /// Pod, WorkloadEndpoint or HostEndpoint name.
    pub name: String,
    /// The node-side interface of a workload; for a host endpoint, its interface, `*`, or
    /// empty (the interfaces holding one of `expected_ips`, [`resolve_host_endpoints`]).
    pub interface: String,
    /// A host endpoint's `expectedIPs` when it names no interface; empty otherwise.
    pub expected_ips: Vec<IpAddr>,
}

/// How this node names things, and what the node's host interfaces hold.
#[derive(Debug, Clone)]
pub struct RenderConfig {
    /// Prefix of every workload interface on the node (fail-closed dispatch).
    pub workload_prefix: String,
    /// NFLOG tags on every verdict, for a flow-log collector ([`crate::tag`]).
    pub tagging: Tagging,
    /// The node's interfaces and their addresses (as the agent last read them): what a
    /// host endpoint without `interfaceName` is resolved against.
    pub host_interfaces: HostInterfaces,
    /// The node settings the table enforces: the host endpoints' failsafe ports, and
    /// what a workload's traffic to its own host meets.
    pub host_defaults: HostDefaults,
}

impl Default for RenderConfig {
    fn default() -> Self {
        RenderConfig {
            workload_prefix: "bh".into(),
            tagging: Tagging::Off,
            host_interfaces: HostInterfaces::new(),
            host_defaults: HostDefaults::default(),
        }
    }
}

impl LocalEndpoint {
    /// A workload `namespace/name` behind the node-side `interface`.
    pub fn workload(namespace: &str, name: &str, interface: &str) -> LocalEndpoint {
        LocalEndpoint {
            kind: EndpointKind::Workload,
            namespace: Some(namespace.to_string()),
            name: name.to_string(),
            interface: interface.to_string(),
            expected_ips: Vec::new(),
        }
    }

    /// A host endpoint on the named `interface` (or `*`).
    pub fn host(name: &str, interface: &str) -> LocalEndpoint {
        LocalEndpoint {
            kind: EndpointKind::Host,
            namespace: None,
            name: name.to_string(),
            interface: interface.to_string(),
            expected_ips: Vec::new(),
        }
    }

    /// The endpoint `resource` describes if it is enforced on `node`: a Pod scheduled on
    /// it (`spec.nodeName`, not `hostNetwork`) behind the interface
    /// [`workload_interface`] derives; a WorkloadEndpoint with `spec.node` behind its
    /// `spec.interfaceName` (or the derived name when empty); a HostEndpoint with
    /// `spec.node` on its `spec.interfaceName`, or, when that is empty, on the interfaces
    /// holding one of its `spec.expectedIPs`. `None` otherwise.
    pub fn for_node(resource: &Resource, node: &str, prefix: &str) -> Option<LocalEndpoint> {
        let namespace = |ns: &Option<String>| ns.clone().unwrap_or_else(|| "default".into());
        match resource {
            Resource::Pod(p)
                if p.spec.node_name.as_deref() == Some(node) && !p.spec.host_network =>
            {
                let ns = namespace(&p.metadata.namespace);
                Some(LocalEndpoint {
                    kind: EndpointKind::Workload,
                    interface: workload_interface(prefix, &ns, &p.metadata.name),
                    namespace: Some(ns),
                    name: p.metadata.name.clone(),
                    expected_ips: Vec::new(),
                })
            }
            Resource::WorkloadEndpoint(w) if w.spec.node == node => {
                let ns = namespace(&w.metadata.namespace);
                let interface = if w.spec.interface_name.is_empty() {
                    workload_interface(prefix, &ns, &w.metadata.name)
                } else {
                    w.spec.interface_name.clone()
                };
                Some(LocalEndpoint {
                    kind: EndpointKind::Workload,
                    interface,
                    namespace: Some(ns),
                    name: w.metadata.name.clone(),
                    expected_ips: Vec::new(),
                })
            }
            Resource::HostEndpoint(h) if h.spec.node == node => Some(LocalEndpoint {
                kind: EndpointKind::Host,
                namespace: None,
                name: h.metadata.name.clone(),
                interface: h.spec.interface_name.clone(),
                // Validated at load; only needed to find the interface.
                expected_ips: if h.spec.interface_name.is_empty() {
                    h.spec
                        .expected_ips
                        .iter()
                        .filter_map(|ip| ip.parse().ok())
                        .collect()
                } else {
                    Vec::new()
                },
            }),
            _ => None,
        }
    }

    /// The order [`local_endpoints`] returns endpoints in: namespace, name, kind,
    /// interface. [`render`] gives the later of two workloads on one interface the
    /// interface, and keeps host endpoints in this order within named interfaces and `*`.
    pub fn order_key(&self) -> (Option<&str>, &str, bool, &str) {
        (
            self.namespace.as_deref(),
            &self.name,
            self.kind == EndpointKind::Host,
            &self.interface,
        )
    }
}

/// Every endpoint of `node` among `resources` ([`LocalEndpoint::for_node`]), in
/// [`LocalEndpoint::order_key`] order.
pub fn local_endpoints<'a>(
    resources: impl IntoIterator<Item = &'a Resource>,
    node: &str,
    prefix: &str,
) -> Vec<LocalEndpoint> {
    let mut out: Vec<LocalEndpoint> = resources
        .into_iter()
        .filter_map(|r| LocalEndpoint::for_node(r, node, prefix))
        .collect();
    out.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
    out
}

/// IPv6 neighbour discovery keeps IPv6 working whatever the policy says.
const ND_ACCEPT: &str = "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, nd-router-advert } accept";

const CT: [&str; 2] = [
    "ct state established,related accept",
    "ct state invalid drop",
];

/// Renders the table that enforces `cluster` for the `local` endpoints.
pub fn render(cluster: &Cluster, local: &[LocalEndpoint], config: &RenderConfig) -> Table {
    let mut b = TableBuilder {
        cluster,
        table: Table::default(),
        sets: SetRequests::new(),
        tagging: config.tagging,
    };
    let workloads: Vec<&LocalEndpoint> = local
        .iter()
        .filter(|e| e.kind == EndpointKind::Workload)
        .collect();
    let hosts: Vec<&LocalEndpoint> = local
        .iter()
        .filter(|e| e.kind == EndpointKind::Host)
        .collect();

    let mut from = VerdictMap::default();
    let mut to = VerdictMap::default();
    for w in &workloads {
        let Some(index) =
            cluster.endpoint_index(EndpointKind::Workload, w.namespace.as_deref(), &w.name)
        else {
            // Registered on the node but unknown to the model: the interface is in no
            // map, so its traffic is dropped.
            continue;
        };
        let names = WorkloadChains::new(&w.interface);
        let out_rules = b.endpoint_rules(index, false);
        let in_rules = b.endpoint_rules(index, true);
        b.table
            .chains
            .insert(names.egress.clone(), regular(out_rules));
        b.table
            .chains
            .insert(names.ingress.clone(), regular(in_rules));
        from.elements
            .insert(names.key.clone(), names.from_verdict());
        let verdict = names.to_verdict();
        to.elements.insert(names.key, verdict);
    }
    b.table.maps.insert(WL_FROM.into(), from);
    b.table.maps.insert(WL_TO.into(), to);

    let mut hosts_present = false;
    if !hosts.is_empty() {
        let mut present = Vec::new();
        for h in &hosts {
            let Some(index) = cluster.endpoint_index(EndpointKind::Host, None, &h.name) else {
                continue;
            };
            for ingress in [true, false] {
                let rules = b.endpoint_rules(index, ingress);
                let name = host_chain_name(&h.name, PolicyClass::Normal, ingress);
                b.table.chains.insert(name, regular(rules));
            }
            for (class, ingress) in EARLY_CLASSES {
                let tiers = b.tiers(index, class, ingress);
                let rules = early_chain(&tiers, ingress, b.tagging);
                let name = host_chain_name(&h.name, class, ingress);
                b.table.chains.insert(name, regular(rules));
            }
            for ingress in [true, false] {
                let tiers = b.tiers(index, PolicyClass::Forward, ingress);
                let rules = forwarded_chain(&tiers, ingress, b.tagging);
                let name = host_chain_name(&h.name, PolicyClass::Forward, ingress);
                b.table.chains.insert(name, regular(rules));
            }
            present.push(*h);
        }
        if !present.is_empty() {
            let chains = host_base_chains(&resolve_host_endpoints(&present, config), config);
            b.table.chains.extend(chains);
            hosts_present = true;
        }
    }
    b.table
        .chains
        .extend(dispatch_chains(config, hosts_present));
    let TableBuilder {
        mut table, sets, ..
    } = b;
    for (name, request) in &sets {
        table
            .sets
            .insert(name.clone(), request_set(cluster, request));
    }
    table
}

/// Verdict map: workload interface → the workload's egress chain.
pub const WL_FROM: &str = "wl_from";
/// Verdict map: workload interface → the workload's ingress chain.
pub const WL_TO: &str = "wl_to";
/// The chain a forwarded packet goes on in once its source allowed it (or has none):
/// the destination workload's ingress.
pub const TO_WORKLOAD: &str = "to_workload";
/// The base chain of traffic from local workloads to this host: their egress policy.
pub const WORKLOAD_INPUT: &str = "workload_input";
/// With `DefaultEndpointToHostAction: Drop`, the chain [`WORKLOAD_INPUT`] jumps to for a
/// workload's egress policy, so that what the policy allows comes back to be dropped.
pub const WL_TO_HOST: &str = "wl_to_host";

/// The chains that dispatch workload traffic, whatever the node's endpoints: the
/// `forward` base chain and [`TO_WORKLOAD`] (conntrack, then the source workload's
/// egress, then the destination's ingress), and [`WORKLOAD_INPUT`] (a workload's traffic
/// to this host: its egress, and then the node's `DefaultEndpointToHostAction`; the host
/// endpoints' chains let it by). A known workload interface is found by its map lookup
/// alone; a workload-prefixed interface that no map holds is dropped after it (fail
/// closed), so the check costs nothing on the path of a known workload.
///
/// With `Accept` or `Return` (the same here: other tables see the packet either way)
/// [`WORKLOAD_INPUT`] goes to the egress chain, whose allow ends in the base chain's
/// accept policy. With `Drop` it jumps to [`WL_TO_HOST`], which goes to the egress chain;
/// an allow returns from the jump, and the next rule drops.
///
/// On a node with host endpoints (`hosts`), forwarded traffic also meets the
/// `applyOnForward` chains of the host endpoint it came in through ([`FROM_HOST`], first,
/// unless a pre-DNAT policy accepted it) and of the one it leaves through ([`TO_HOST`],
/// last, when the destination is not a workload here).
pub fn dispatch_chains(config: &RenderConfig, hosts: bool) -> Vec<(String, Chain)> {
    let prefix = &config.workload_prefix;
    let mut forward: Vec<String> = CT.iter().map(|s| s.to_string()).collect();
    if hosts {
        forward.push(format!(
            "meta mark & {MARK_ACCEPT:#x} == 0x0 jump {FROM_HOST}"
        ));
    }
    let from_workload = format!("iifname vmap @{WL_FROM}");
    let unknown_workload = format!("iifname \"{prefix}*\" drop");
    forward.push(from_workload.clone());
    forward.push(unknown_workload.clone());
    forward.push(format!("goto {TO_WORKLOAD}"));
    let mut to = vec![
        format!("oifname vmap @{WL_TO}"),
        format!("oifname \"{prefix}*\" drop"),
    ];
    if hosts {
        to.push(format!("goto {TO_HOST}"));
    }
    // From `workload_input`, the egress chain's allow also comes through `to_workload`,
    // where no output interface matches.
    let mut input = vec![CT[0].to_string(), CT[1].to_string(), ND_ACCEPT.to_string()];
    let admits = config.host_defaults.endpoint_to_host.admits();
    if admits {
        input.push(from_workload);
    } else {
        input.push(format!("iifname \"{prefix}*\" jump {WL_TO_HOST}"));
    }
    // Unknown to `wl_from` (fail closed) or, with `Drop`, allowed by the egress chain.
    input.push(unknown_workload);
    let mut chains = vec![
        (
            "forward".to_string(),
            Chain {
                hook: Some(Hook::Forward),
                rules: forward,
            },
        ),
        (TO_WORKLOAD.to_string(), regular(to)),
        (
            WORKLOAD_INPUT.to_string(),
            Chain {
                hook: Some(Hook::WorkloadInput),
                rules: input,
            },
        ),
    ];
    if !admits {
        chains.push((
            WL_TO_HOST.to_string(),
            regular(vec![format!("iifname vmap @{WL_FROM}")]),
        ));
    }
    chains
}

/// The names a workload interface gives its chains and dispatch entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadChains {
    /// The key of `wl_from`/`wl_to`: the quoted interface.
    pub key: String,
    /// `w.<if>.in`.
    pub ingress: String,
    /// `w.<if>.out`.
    pub egress: String,
}

impl WorkloadChains {
    /// The names for `interface`.
    pub fn new(interface: &str) -> WorkloadChains {
        WorkloadChains {
            key: format!("\"{interface}\""),
            ingress: format!("w.{interface}.in"),
            egress: format!("w.{interface}.out"),
        }
    }

    /// The `wl_from` verdict: go to the egress chain (which goes on to
    /// [`TO_WORKLOAD`] if it allows).
    pub fn from_verdict(&self) -> String {
        format!("goto {}", self.egress)
    }

    /// The `wl_to` verdict: go to the ingress chain.
    pub fn to_verdict(&self) -> String {
        format!("goto {}", self.ingress)
    }
}

/// What an endpoint chain does once the packet is allowed: a workload's egress goes on to
/// the destination's ingress ([`TO_WORKLOAD`]) in the same forward pass; everything else
/// accepts.
pub fn allow_verdict(kind: EndpointKind, ingress: bool) -> &'static str {
    match (kind, ingress) {
        (EndpointKind::Workload, false) => "goto to_workload",
        _ => "accept",
    }
}

/// One tier of an endpoint chain: the tier and its policies' chains, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierChains<'a> {
    /// Tier name.
    pub tier: &'a str,
    /// What happens when no policy of the tier decides.
    pub default_action: TierDefaultAction,
    /// The policy chains ([`policy_chain_name`]) in evaluation order, with the
    /// [`Reach`] of their rules in this direction.
    pub policies: Vec<(String, Reach)>,
}

impl<'a> TierChains<'a> {
    /// `tier` with its `policies` (those of an endpoint's `class` list, in evaluation
    /// order) for one direction.
    pub fn of<'p>(
        tier: &'a Tier,
        policies: impl IntoIterator<Item = &'p Policy>,
        class: PolicyClass,
        ingress: bool,
    ) -> TierChains<'a> {
        TierChains {
            tier: &tier.name,
            default_action: tier.default_action,
            policies: policies
                .into_iter()
                .map(|p| {
                    let name = policy_chain_name(&p.id, class, ingress);
                    (name, policy_reach(p, ingress))
                })
                .collect(),
        }
    }
}

/// One profile of an endpoint, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProfileChain<'a> {
    /// The profile exists: its chain ([`profile_chain_name`]).
    Exists(String),
    /// The profile's first rule in this direction allows everything (a namespace's
    /// profile, typically): the endpoint chain allows here, without a jump.
    AllowsAll(&'a str),
    /// No profile of this name exists: the endpoint chain drops here.
    Missing(&'a str),
}

/// An endpoint's profiles for one direction, in order, up to the first that allows
/// everything (nothing after it is reached); `lookup` finds a profile by name.
pub fn endpoint_profiles<'a, S: AsRef<str>, P: std::borrow::Borrow<Profile>>(
    names: &'a [S],
    ingress: bool,
    mut lookup: impl FnMut(&str) -> Option<P>,
) -> Vec<ProfileChain<'a>> {
    let mut out = Vec::new();
    for name in names {
        let name = name.as_ref();
        match lookup(name) {
            Some(p) if allows_everything(direction_rules(p.borrow(), ingress)) => {
                out.push(ProfileChain::AllowsAll(name));
                break;
            }
            Some(_) => out.push(ProfileChain::Exists(profile_chain_name(name, ingress))),
            None => out.push(ProfileChain::Missing(name)),
        }
    }
    out
}

fn direction_rules(profile: &Profile, ingress: bool) -> &[Rule] {
    if ingress {
        &profile.ingress
    } else {
        &profile.egress
    }
}

/// True if the first of `rules` allows every packet: an Allow with no criteria at all.
fn allows_everything(rules: &[Rule]) -> bool {
    let Some(r) = rules.first() else {
        return false;
    };
    let open = |e: &Entity| {
        e.nets.is_empty()
            && e.not_nets.is_empty()
            && e.ports.is_empty()
            && e.not_ports.is_empty()
            && e.selector.is_none()
            && e.not_selector.is_none()
    };
    r.action == Action::Allow
        && r.ip_version.is_none()
        && r.protocol.is_none()
        && r.not_protocol.is_none()
        && r.icmp.is_none()
        && r.not_icmp.is_none()
        && open(&r.src)
        && open(&r.dst)
}

/// An endpoint chain for one direction and the class chains its dispatch map goes to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointChains {
    /// The endpoint chain's rules.
    pub rules: Vec<String>,
    /// Class chains ([`dispatch`]) by name, each once.
    pub classes: Vec<(String, Vec<String>)>,
}

/// One endpoint's chain for one direction: its tiers with Calico's mark protocol, then
/// its profiles, then drop; `allow` is [`allow_verdict`]. With [`dispatch::MIN_POLICIES`]
/// or more policies, a dispatch map on protocol and destination port goes first and sends
/// each keyed class of packets to a chain with only the policies that can match them.
pub fn endpoint_chains(
    tiers: &[TierChains<'_>],
    profiles: &[ProfileChain<'_>],
    allow: &str,
    ingress: bool,
    tagging: Tagging,
) -> EndpointChains {
    let reaches: Vec<&Reach> = tiers
        .iter()
        .flat_map(|t| t.policies.iter().map(|(_, reach)| reach))
        .collect();
    // Ingress policy chains accept by themselves (see `policy_chain`).
    let tier_walk = TierWalk {
        allow,
        ingress,
        policies_accept: ingress,
        tagging,
    };
    let walk = |included| tier_walk.rules(tiers, Some(profiles), included);
    // The marks are read only after a policy or profile chain set them; an endpoint
    // without policies decided by a profile that allows everything (a namespace's), or by
    // a drop, tests none, and its new connections skip the clearing.
    let marks_read = !tiers.is_empty() || matches!(profiles.first(), Some(ProfileChain::Exists(_)));
    let mut rules = if marks_read {
        vec![clear_marks()]
    } else {
        Vec::new()
    };
    if reaches.len() < dispatch::MIN_POLICIES {
        rules.extend(walk(None));
        return EndpointChains {
            rules,
            classes: Vec::new(),
        };
    }
    let (classes, rest) = dispatch::classes(&reaches);
    let mut chains: Vec<(String, Vec<String>)> = Vec::new();
    let mut entries: Vec<(&dispatch::Class, String)> = Vec::new();
    for class in &classes {
        let body = walk(Some(&class.included));
        let name = dispatch::class_chain_name(&body);
        if !chains.iter().any(|(n, _)| *n == name) {
            chains.push((name.clone(), body));
        }
        entries.push((class, name));
    }
    if !entries.is_empty() {
        let entries: Vec<(&dispatch::Class, &str)> =
            entries.iter().map(|(c, n)| (*c, n.as_str())).collect();
        rules.push(dispatch::dispatch_rule(&entries));
    }
    rules.extend(walk(Some(&rest)));
    EndpointChains {
        rules,
        classes: chains,
    }
}

/// A host endpoint's chain for its untracked or pre-DNAT policies ([`EARLY_CLASSES`]):
/// the tiers, each ending in Pass whatever its default, and no profiles. A policy's Allow
/// marks and accepts, Deny drops; if nothing decides, the chain returns and the packet
/// goes on to the next hook.
pub fn early_chain(tiers: &[TierChains<'_>], ingress: bool, tagging: Tagging) -> Vec<String> {
    let passing: Vec<TierChains<'_>> = tiers
        .iter()
        .map(|t| TierChains {
            default_action: TierDefaultAction::Pass,
            ..t.clone()
        })
        .collect();
    let mut rules = vec![clear_marks()];
    let walk = TierWalk {
        allow: "accept",
        ingress,
        policies_accept: true,
        tagging,
    };
    rules.extend(walk.rules(&passing, None, None));
    rules
}

/// A host endpoint's chain for the traffic its host forwards, in one direction
/// (`h.<name>.fwd.in|out`): its [`PolicyClass::Forward`] tiers with their default actions,
/// then drop, as there are no profiles. Allowed traffic returns (coming in: the
/// destination's checks follow) or is accepted (going out: the last check). With no such
/// policy the chain is empty and the traffic goes on: forwarded traffic is allowed by
/// default.
pub fn forwarded_chain(tiers: &[TierChains<'_>], ingress: bool, tagging: Tagging) -> Vec<String> {
    if tiers.is_empty() {
        return Vec::new();
    }
    let walk = TierWalk {
        allow: if ingress { "return" } else { "accept" },
        ingress,
        policies_accept: false,
        tagging,
    };
    let mut rules = vec![clear_marks()];
    rules.extend(walk.rules(tiers, None, None));
    rules.push(format!(
        "{} comment \"no applyOnForward policy allowed it\"",
        walk.drop(&TaggedRule::NoProfile)
    ));
    rules
}

/// How an endpoint chain walks its tiers: `allow` is [`allow_verdict`];
/// `policies_accept`: an allowed packet never comes back from a policy chain (ingress and
/// early chains, see [`policy_chain`]), so there is no accept mark to test after each jump.
struct TierWalk<'a> {
    allow: &'a str,
    ingress: bool,
    policies_accept: bool,
    tagging: Tagging,
}

impl TierWalk<'_> {
    /// The tiers and profiles of an endpoint chain, after the marks are cleared (no
    /// profiles: the chain ends after the tiers and returns); with `included`, only the
    /// policies (by position in tier order) it marks.
    fn rules(
        &self,
        tiers: &[TierChains<'_>],
        profiles: Option<&[ProfileChain<'_>]>,
        included: Option<&[bool]>,
    ) -> Vec<String> {
        let (allow, ingress) = (self.allow, self.ingress);
        let clear_pass = format!("meta mark set meta mark & {:#x}", !MARK_PASS);
        let accepted = format!("meta mark & {MARK_ACCEPT:#x} == {MARK_ACCEPT:#x} {allow}");
        let not_passed = format!("meta mark & {MARK_PASS:#x} == 0x0");
        let mut rules = Vec::new();
        let mut position = 0;
        for tier in tiers {
            let mut first = true;
            for (chain, _) in &tier.policies {
                let keep = included.is_none_or(|inc| inc.get(position).copied().unwrap_or(true));
                position += 1;
                if !keep {
                    continue;
                }
                let guard = if first {
                    String::new()
                } else {
                    format!("{not_passed} ")
                };
                first = false;
                rules.push(format!("{guard}jump {chain}"));
                if !self.policies_accept {
                    rules.push(accepted.clone());
                }
            }
            let eot = TaggedRule::EndOfTier {
                tier: tier.tier.to_string(),
            };
            match tier.default_action {
                TierDefaultAction::Deny => rules.push(format!(
                    "{not_passed} {} comment \"end of tier {}\"",
                    self.drop(&eot),
                    tier.tier
                )),
                // Logged only (when tagging): the packet goes on to the next tier.
                TierDefaultAction::Pass => {
                    let tag = self.tagging.verdict(&eot, TagVerdict::Pass, ingress, "");
                    if !tag.is_empty() {
                        rules.push(format!("{not_passed} {tag}"));
                    }
                }
            }
            rules.push(clear_pass.clone());
        }
        let Some(profiles) = profiles else {
            return rules;
        };
        for profile in profiles {
            match profile {
                ProfileChain::Exists(chain) => {
                    rules.push(format!("jump {chain}"));
                    rules.push(accepted.clone());
                }
                ProfileChain::AllowsAll(name) => {
                    let first = TaggedRule::Profile {
                        profile: name.to_string(),
                        index: 0,
                    };
                    rules.push(
                        self.tagging
                            .verdict(&first, TagVerdict::Allow, ingress, allow),
                    );
                    return rules;
                }
                ProfileChain::Missing(name) => {
                    let missing = TaggedRule::MissingProfile {
                        profile: name.to_string(),
                    };
                    rules.push(format!(
                        "{} comment \"profile {name} does not exist\"",
                        self.drop(&missing)
                    ))
                }
            }
        }
        rules.push(format!(
            "{} comment \"no profile matched\"",
            self.drop(&TaggedRule::NoProfile)
        ));
        rules
    }

    /// `drop`, after the NFLOG tag of `tagged` when tagging.
    fn drop(&self, tagged: &TaggedRule) -> String {
        self.tagging
            .verdict(tagged, TagVerdict::Deny, self.ingress, "drop")
    }
}

/// The table being rendered from `cluster`, with the sets its rules ask for.
struct TableBuilder<'a> {
    cluster: &'a Cluster,
    table: Table,
    sets: SetRequests,
    tagging: Tagging,
}

impl<'a> TableBuilder<'a> {
    /// [`endpoint_chains`] for endpoint `index`, adding the policy, profile and class
    /// chains it jumps to (and the sets they use) unless present.
    fn endpoint_rules(&mut self, index: usize, ingress: bool) -> Vec<String> {
        let cluster = self.cluster;
        let Some(endpoint) = cluster.endpoint(index) else {
            return vec!["drop".into()];
        };
        let tiers = self.tiers(index, PolicyClass::Normal, ingress);
        let profiles = endpoint_profiles(&endpoint.profiles, ingress, |name| cluster.profile(name));
        for (profile, name) in profiles.iter().zip(&endpoint.profiles) {
            if let (ProfileChain::Exists(chain), Some(p)) =
                (profile, cluster.profile(name.as_ref()))
                && !self.table.chains.contains_key(chain)
            {
                let rules = profile_chain(p, ingress, self.tagging, &mut self.sets);
                self.table.chains.insert(chain.clone(), rules);
            }
        }
        let allow = allow_verdict(endpoint.kind, ingress);
        let chains = endpoint_chains(&tiers, &profiles, allow, ingress, self.tagging);
        for (name, rules) in chains.classes {
            self.table
                .chains
                .entry(name)
                .or_insert_with(|| regular(rules));
        }
        chains.rules
    }

    /// Endpoint `index`'s tiers of one class and direction, adding the policy chains they
    /// jump to (and the sets those use) unless present.
    fn tiers(&mut self, index: usize, class: PolicyClass, ingress: bool) -> Vec<TierChains<'a>> {
        self.cluster
            .endpoint_tiers(index, Mode::Enforced, class, ingress)
            .into_iter()
            .map(|view| {
                for &policy in &view.policies {
                    let name = policy_chain_name(&policy.id, class, ingress);
                    if !self.table.chains.contains_key(&name) {
                        let chain =
                            policy_chain(policy, class, ingress, self.tagging, &mut self.sets);
                        self.table.chains.insert(name, chain);
                    }
                }
                TierChains::of(view.tier, view.policies, class, ingress)
            })
            .collect()
    }
}

/// Clears the accept and pass marks.
fn clear_marks() -> String {
    format!(
        "meta mark set meta mark & {:#x}",
        !(MARK_ACCEPT | MARK_PASS)
    )
}

/// A chain without a hook.
fn regular(rules: Vec<String>) -> Chain {
    Chain { hook: None, rules }
}

fn direction(ingress: bool) -> &'static str {
    if ingress { "in" } else { "out" }
}
