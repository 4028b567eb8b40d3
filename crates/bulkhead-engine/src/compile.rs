//! Policies and profiles compiled for evaluation: selectors parsed and combined exactly as
//! Calico's syncer combines them, CIDRs parsed, ports split.
//!
//! Scoping (reference: Calico `updateprocessors/rules.go`):
//! - a namespaced policy's selector is ANDed with `projectcalico.org/namespace == '<ns>'`;
//! - a GlobalNetworkPolicy's `namespaceSelector` is ANDed as `pcns.`-prefixed labels;
//! - in a rule, any selector field (selector, notSelector, namespaceSelector,
//!   serviceAccounts) confines the positive match to the policy's namespace unless the
//!   rule names a `namespaceSelector`; a rule with only nets/ports is not confined;
//! - `notSelector` is never namespaced.

use std::net::IpAddr;

use bulkhead_api::calico::{EntityRule, IcmpFields, Rule as ApiRule};
use bulkhead_api::values::{Action, PolicyType, Port, Protocol, StagedAction};
use bulkhead_api::{Kind, NAMESPACE_LABEL, parse_cidr};
use bulkhead_selector::Selector;
use ipnet::IpNet;

use crate::decision::{Name, PolicyRef};
use crate::endpoint::{NAMESPACE_PREFIX, SERVICE_ACCOUNT_LABEL, SERVICE_ACCOUNT_PREFIX};
use crate::model::{Cluster, ModelError};

/// Which dataplane phase a policy runs in. Workloads only have `Normal`; host endpoints
/// have all four.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyClass {
    /// `doNotTrack`: before connection tracking; tiers end in Pass; no profiles.
    Untracked,
    /// `preDNAT`: ingress before DNAT; tiers end in Pass; no profiles.
    PreDnat,
    /// Every other policy.
    Normal,
    /// The `Normal` policies with `applyOnForward`, as a host endpoint applies them to the
    /// traffic its host forwards: tiers keep their default action, no profiles, and with
    /// no such policy at all the traffic is allowed. A policy's own `class` is never this;
    /// [`Policy::applies_in`] says which lists a policy joins.
    Forward,
}

/// A compiled policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Kind, namespace and name.
    pub id: PolicyRef,
    /// Tier name.
    pub tier: String,
    /// Order in the tier (`None` = last).
    pub order: Option<f64>,
    /// The combined endpoint selector.
    pub selector: Selector,
    /// Governs ingress.
    pub ingress_type: bool,
    /// Governs egress.
    pub egress_type: bool,
    /// Ingress rules.
    pub ingress: Vec<Rule>,
    /// Egress rules.
    pub egress: Vec<Rule>,
    /// `Some` for staged policies.
    pub staged: Option<StagedAction>,
    /// Dataplane phase (never [`PolicyClass::Forward`]).
    pub class: PolicyClass,
    /// `applyOnForward`: also governs traffic that a selected host endpoint forwards.
    pub apply_on_forward: bool,
}

impl Policy {
    /// Whether the policy is in an endpoint's `class` list (when it selects it): its own
    /// class, and [`PolicyClass::Forward`] too for a normal policy with `applyOnForward`.
    pub fn applies_in(&self, class: PolicyClass) -> bool {
        match class {
            PolicyClass::Forward => self.class == PolicyClass::Normal && self.apply_on_forward,
            class => self.class == class,
        }
    }
}

/// A compiled rule.
///
/// Laid out (`repr(C)`, fields in this order) so that the checks a flow usually fails,
/// protocol and destination port, read the rule's first cache line only.
#[derive(Debug, Clone)]
#[repr(C)]
pub struct Rule {
    /// Action.
    pub action: Action,
    /// 4 or 6.
    pub ip_version: Option<u8>,
    /// Protocol to match.
    pub protocol: Option<Protocol>,
    /// Protocol not to match.
    pub not_protocol: Option<Protocol>,
    /// ICMP type/code to match.
    pub icmp: Option<IcmpFields>,
    /// ICMP type/code not to match.
    pub not_icmp: Option<IcmpFields>,
    /// `dst.ports` summarised (see [`PortGate`]).
    pub(crate) dst_ports: PortGate,
    /// Source criteria.
    pub src: Entity,
    /// Destination criteria.
    pub dst: Entity,
}

/// Which destination ports a rule can match at all, in a few bytes kept in the rule's
/// first cache line: a necessary condition of `dst.ports`, checked before anything else
/// of the destination is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PortGate {
    /// Any port may match: no ports, or ports this cannot summarise (named ports, or more
    /// than two ranges); `dst.ports` decides.
    Open,
    /// Only a port in one of the first `len` ranges (inclusive) can match: `dst.ports`,
    /// which are all numeric.
    Ranges {
        /// How many of `ranges` are used (1 or 2).
        len: u8,
        /// `(min, max)` of each range.
        ranges: [(u16, u16); 2],
    },
}

impl PortGate {
    /// The gate of a rule whose destination ports are `ports`.
    pub(crate) fn of(ports: &[Port]) -> PortGate {
        let mut ranges = [(0, 0); 2];
        if ports.is_empty() || ports.len() > ranges.len() {
            return PortGate::Open;
        }
        for (slot, p) in ranges.iter_mut().zip(ports) {
            match p {
                Port::Range { min, max } => *slot = (*min, *max),
                Port::Named(_) => return PortGate::Open,
            }
        }
        PortGate::Ranges {
            len: ports.len() as u8,
            ranges,
        }
    }

    /// False only if no port of the gate's list contains `port` (as `Port::contains`).
    pub(crate) fn admits(&self, port: Option<u16>) -> bool {
        match self {
            PortGate::Open => true,
            PortGate::Ranges { len, ranges } => port.is_some_and(|p| {
                ranges[..usize::from(*len)]
                    .iter()
                    .any(|&(min, max)| Port::Range { min, max }.contains(p))
            }),
        }
    }
}

/// Compiled source or destination criteria.
///
/// Laid out (`repr(C)`, fields in this order) so that the checks that need no labels
/// (nets, ports) read one or two cache lines.
#[derive(Debug, Clone)]
#[repr(C)]
pub struct Entity {
    /// Address in any of these.
    pub nets: Vec<IpNet>,
    /// Address in none of these.
    pub not_nets: Vec<IpNet>,
    /// Port in any of these (numeric or named).
    pub ports: Vec<Port>,
    /// Port in none of these.
    pub not_ports: Vec<Port>,
    /// Ids of `selector` and `not_selector` among the cluster's rule selectors, which
    /// index the per-endpoint cache of matching rule selectors ([`NO_SELECTOR_ID`] until
    /// the cluster assigns them: then the selector is evaluated on the labels).
    pub(crate) selector_ids: [u32; 2],
    /// Protocol named ports are looked up with (the rule's, default TCP).
    pub named_port_protocol: Protocol,
    /// Combined positive selector (namespace, selector, service accounts).
    pub selector: Option<Selector>,
    /// Negative selector (never namespaced).
    pub not_selector: Option<Selector>,
}

/// The id of a selector that has none (see `Entity::selector_ids`).
pub(crate) const NO_SELECTOR_ID: u32 = u32::MAX;

impl Default for Entity {
    fn default() -> Self {
        Entity {
            nets: Vec::new(),
            not_nets: Vec::new(),
            selector: None,
            not_selector: None,
            ports: Vec::new(),
            not_ports: Vec::new(),
            named_port_protocol: Protocol::TCP,
            selector_ids: [NO_SELECTOR_ID; 2],
        }
    }
}

/// A compiled profile.
#[derive(Debug, Clone)]
pub struct Profile {
    /// Name.
    pub name: String,
    /// Ingress rules.
    pub ingress: Vec<Rule>,
    /// Egress rules.
    pub egress: Vec<Rule>,
}

/// The policy fields shared by every kind, in their Calico form.
pub struct PolicyInput<'a> {
    /// Kind.
    pub kind: Kind,
    /// Namespace (namespaced kinds).
    pub namespace: Option<&'a str>,
    /// Name.
    pub name: &'a str,
    /// Tier.
    pub tier: &'a str,
    /// Order.
    pub order: Option<f64>,
    /// Selector text.
    pub selector: Option<&'a str>,
    /// GNP namespace selector.
    pub namespace_selector: Option<&'a str>,
    /// Service-account selector.
    pub service_account_selector: Option<&'a str>,
    /// Types.
    pub types: &'a [PolicyType],
    /// Ingress rules.
    pub ingress: &'a [ApiRule],
    /// Egress rules.
    pub egress: &'a [ApiRule],
    /// Staged action (staged kinds).
    pub staged: Option<StagedAction>,
    /// Dataplane phase.
    pub class: PolicyClass,
    /// `applyOnForward`.
    pub apply_on_forward: bool,
}

/// Compiles one policy.
pub fn compile_policy(p: PolicyInput<'_>) -> Result<Policy, ModelError> {
    let id = PolicyRef {
        kind: p.kind,
        namespace: p.namespace.map(Name::from),
        name: Name::from(p.name),
    };
    let ctx = |field: &str, e: String| ModelError::Compile {
        policy: id.to_string(),
        field: field.to_string(),
        message: e,
    };
    let mut selector = parse(p.selector.unwrap_or("")).map_err(|e| ctx("spec.selector", e))?;
    if let Some(ns) = p.namespace {
        selector = selector.and(Selector::equals(NAMESPACE_LABEL, ns));
    }
    if let Some(ns_sel) = p.namespace_selector {
        let ns_sel = parse(ns_sel).map_err(|e| ctx("spec.namespaceSelector", e))?;
        let ns_sel = if ns_sel.is_all() {
            Selector::has(NAMESPACE_LABEL)
        } else {
            ns_sel.with_label_prefix(NAMESPACE_PREFIX)
        };
        selector = selector.and(ns_sel);
    }
    if let Some(sa_sel) = p.service_account_selector {
        let sa_sel = parse(sa_sel).map_err(|e| ctx("spec.serviceAccountSelector", e))?;
        let sa_sel = if sa_sel.is_all() {
            Selector::has(SERVICE_ACCOUNT_LABEL)
        } else {
            sa_sel.with_label_prefix(SERVICE_ACCOUNT_PREFIX)
        };
        selector = selector.and(sa_sel);
    }
    let rules = |rules: &[ApiRule], field: &str| {
        compile_rules(rules, p.namespace, |i, e| ctx(&format!("{field}[{i}]"), e))
    };
    Ok(Policy {
        tier: p.tier.to_string(),
        order: p.order,
        selector,
        ingress_type: p.types.contains(&PolicyType::Ingress),
        egress_type: p.types.contains(&PolicyType::Egress),
        ingress: rules(p.ingress, "spec.ingress")?,
        egress: rules(p.egress, "spec.egress")?,
        staged: p.staged,
        class: p.class,
        apply_on_forward: p.apply_on_forward,
        id,
    })
}

/// Compiles a profile's rules (profiles are not namespaced).
pub fn compile_profile(
    name: &str,
    ingress: &[ApiRule],
    egress: &[ApiRule],
) -> Result<Profile, ModelError> {
    let rules = |rules: &[ApiRule], field: &str| {
        compile_rules(rules, None, |i, e| ModelError::Compile {
            policy: format!("Profile {name}"),
            field: format!("{field}[{i}]"),
            message: e,
        })
    };
    Ok(Profile {
        name: name.to_string(),
        ingress: rules(ingress, "spec.ingress")?,
        egress: rules(egress, "spec.egress")?,
    })
}

/// Compiles `rules` into a vector of exactly their number (a collected `Result` would
/// reserve four rules for one, 1.2 KiB wasted per single-rule policy); `error` names the
/// failing rule by index.
fn compile_rules(
    rules: &[ApiRule],
    namespace: Option<&str>,
    error: impl Fn(usize, String) -> ModelError,
) -> Result<Vec<Rule>, ModelError> {
    let mut out = Vec::with_capacity(rules.len());
    for (i, r) in rules.iter().enumerate() {
        out.push(compile_rule(r, namespace).map_err(|e| error(i, e))?);
    }
    Ok(out)
}

/// A profile with one rule that allows everything in both directions.
pub fn allow_all_profile(name: &str) -> Profile {
    let allow = Rule {
        dst_ports: PortGate::Open,
        action: Action::Allow,
        ip_version: None,
        protocol: None,
        not_protocol: None,
        icmp: None,
        not_icmp: None,
        src: Entity::default(),
        dst: Entity::default(),
    };
    Profile {
        name: name.to_string(),
        ingress: vec![allow.clone()],
        egress: vec![allow],
    }
}

fn parse(text: &str) -> Result<Selector, String> {
    Selector::parse(text).map_err(|e| format!("invalid selector {text:?}: {e}"))
}

fn compile_rule(r: &ApiRule, namespace: Option<&str>) -> Result<Rule, String> {
    let named_port_protocol = r
        .protocol
        .filter(|p| p.supports_ports())
        .unwrap_or(Protocol::TCP);
    let src = compile_entity(&r.source, namespace, named_port_protocol)?;
    let dst = compile_entity(&r.destination, namespace, named_port_protocol)?;
    Ok(Rule {
        action: r.action,
        ip_version: r.ip_version,
        protocol: r.protocol,
        not_protocol: r.not_protocol,
        icmp: r.icmp,
        not_icmp: r.not_icmp,
        dst_ports: PortGate::of(&dst.ports),
        src,
        dst,
    })
}

fn compile_entity(
    e: &EntityRule,
    namespace: Option<&str>,
    named_port_protocol: Protocol,
) -> Result<Entity, String> {
    let nets = |list: &[String]| {
        list.iter()
            .map(|n| parse_cidr(n).ok_or_else(|| format!("invalid CIDR {n:?}")))
            .collect::<Result<Vec<_>, _>>()
    };
    let confined = e.selector.is_some()
        || e.not_selector.is_some()
        || e.namespace_selector.is_some()
        || e.service_accounts.is_some();
    let mut parts: Vec<Selector> = Vec::new();
    if confined {
        match &e.namespace_selector {
            Some(text) => {
                let s = parse(text)?;
                parts.push(if s.is_global() {
                    Selector::has(NAMESPACE_LABEL).negate()
                } else if s.is_all() {
                    Selector::has(NAMESPACE_LABEL)
                } else {
                    s.with_label_prefix(NAMESPACE_PREFIX)
                });
            }
            None => {
                if let Some(ns) = namespace {
                    parts.push(Selector::equals(NAMESPACE_LABEL, ns));
                }
            }
        }
    }
    if let Some(text) = &e.selector {
        parts.push(parse(text)?);
    }
    if let Some(sa) = &e.service_accounts {
        if let Some(text) = &sa.selector {
            parts.push(parse(text)?.with_label_prefix(SERVICE_ACCOUNT_PREFIX));
        }
        if !sa.names.is_empty() {
            parts.push(Selector::in_set(
                SERVICE_ACCOUNT_LABEL,
                sa.names.iter().cloned(),
            ));
        }
    }
    let selector = parts.into_iter().reduce(Selector::and);
    Ok(Entity {
        nets: nets(&e.nets)?,
        not_nets: nets(&e.not_nets)?,
        selector,
        not_selector: e.not_selector.as_deref().map(parse).transpose()?,
        ports: e.ports.clone(),
        not_ports: e.not_ports.clone(),
        named_port_protocol,
        selector_ids: [NO_SELECTOR_ID; 2],
    })
}

/// What a flow's address looks like to rule matching: the address and the label holders
/// (endpoints and network sets) that contain it, as the cluster resolved them (see
/// `Cluster::address`). Building one allocates nothing when no network set contains the
/// address.
pub struct Address<'a> {
    /// The address.
    pub(crate) ip: IpAddr,
    /// The port on this side, when known.
    pub(crate) port: Option<u16>,
    /// Endpoints with this address, the one whose policy applies first (indexes into the
    /// cluster's endpoints).
    pub(crate) endpoints: &'a [usize],
    /// Network sets containing this address (indexes into the cluster's network sets).
    pub(crate) sets: Vec<usize>,
    /// The cluster the indexes refer to.
    pub(crate) cluster: &'a Cluster,
}

impl Address<'_> {
    /// True if `sel` (with id `id`) matches an endpoint or network set at the address.
    fn matches(&self, sel: &Selector, id: u32) -> bool {
        self.endpoints
            .iter()
            .any(|&i| self.cluster.endpoint_matches(i, sel, id))
            || self
                .sets
                .iter()
                .any(|&i| self.cluster.network_set_matches(i, sel, id))
    }

    fn has_named_port(
        &self,
        name: &str,
        protocol: Protocol,
        flow_protocol: Protocol,
        sel: Option<(&Selector, u32)>,
    ) -> bool {
        let Some(port) = self.port else { return false };
        protocol == flow_protocol
            && self.endpoints.iter().any(|&i| {
                self.cluster.endpoints[i]
                    .ports
                    .iter()
                    .any(|p| p.port == port && p.protocol == protocol && p.name == name)
                    && sel.is_none_or(|(s, id)| self.cluster.endpoint_matches(i, s, id))
            })
    }
}

impl Entity {
    /// True if `addr` (with its port) meets every criterion.
    pub fn matches(&self, addr: &Address<'_>, flow_protocol: Protocol) -> bool {
        self.may_match(addr) && self.matches_rest(addr, flow_protocol)
    }

    /// The criteria that need no label lookup: nets, and numeric ports. `false` means the
    /// entity cannot match; `true` means [`Entity::matches_rest`] decides. (Nets are
    /// checked here only; the port checks here are implied by the full ones in
    /// `matches_rest`. So the two together are exactly the entity's criteria.)
    fn may_match(&self, addr: &Address<'_>) -> bool {
        if !self.nets.is_empty() && !self.nets.iter().any(|n| n.contains(&addr.ip)) {
            return false;
        }
        if self.not_nets.iter().any(|n| n.contains(&addr.ip)) {
            return false;
        }
        let numeric = |p: &Port| addr.port.is_some_and(|n| p.contains(n));
        if !self.ports.is_empty()
            && !self
                .ports
                .iter()
                .any(|p| matches!(p, Port::Named(_)) || numeric(p))
        {
            return false;
        }
        !self.not_ports.iter().any(numeric)
    }

    /// Selectors, then ports (named ones need the endpoints' labels and ports).
    fn matches_rest(&self, addr: &Address<'_>, flow_protocol: Protocol) -> bool {
        let [selector_id, not_selector_id] = self.selector_ids;
        if let Some(sel) = &self.selector
            && !addr.matches(sel, selector_id)
        {
            return false;
        }
        if let Some(sel) = &self.not_selector
            && addr.matches(sel, not_selector_id)
        {
            return false;
        }
        let port_in = |ports: &[Port]| {
            ports.iter().any(|p| match p {
                Port::Range { .. } => addr.port.is_some_and(|n| p.contains(n)),
                Port::Named(name) => addr.has_named_port(
                    name,
                    self.named_port_protocol,
                    flow_protocol,
                    self.selector.as_ref().map(|s| (s, selector_id)),
                ),
            })
        };
        if !self.ports.is_empty() && !port_in(&self.ports) {
            return false;
        }
        !port_in(&self.not_ports)
    }
}

impl Rule {
    /// True if the rule matches a flow between `src` and `dst`.
    pub fn matches(&self, flow: &crate::flow::Flow, src: &Address<'_>, dst: &Address<'_>) -> bool {
        if self.ip_version.is_some_and(|v| v != flow.ip_version()) {
            return false;
        }
        if self.protocol.is_some_and(|p| p != flow.protocol) {
            return false;
        }
        if self.not_protocol.is_some_and(|p| p == flow.protocol) {
            return false;
        }
        let icmp_matches = |f: &IcmpFields| match flow.icmp {
            Some((t, c)) => f.icmp_type.is_none_or(|ft| ft == t) && f.code.is_none_or(|fc| fc == c),
            None => false,
        };
        if self.icmp.as_ref().is_some_and(|f| !icmp_matches(f)) {
            return false;
        }
        if self.not_icmp.as_ref().is_some_and(icmp_matches) {
            return false;
        }
        if !self.dst_ports.admits(dst.port) {
            return false;
        }
        // Criteria are ANDed and have no side effects: check the cheap ones of both sides
        // (nets, numeric ports) before any selector.
        self.src.may_match(src)
            && self.dst.may_match(dst)
            && self.src.matches_rest(src, flow.protocol)
            && self.dst.matches_rest(dst, flow.protocol)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn port() -> impl Strategy<Value = Port> {
        prop_oneof![
            (0u16..100, 0u16..20).prop_map(|(min, n)| Port::Range {
                min,
                max: min.saturating_add(n)
            }),
            Just(Port::Named("http".into())),
        ]
    }

    proptest! {
        /// The gate is a necessary condition of the ports check it summarises.
        #[test]
        fn port_gate_rejects_only_what_the_ports_reject(
            ports in proptest::collection::vec(port(), 0..4),
            flow_port in proptest::option::of(0u16..130),
        ) {
            let admitted = PortGate::of(&ports).admits(flow_port);
            let numeric = ports.iter().any(|p| flow_port.is_some_and(|n| p.contains(n)));
            let named = ports.iter().any(|p| matches!(p, Port::Named(_)));
            if !admitted {
                prop_assert!(!ports.is_empty() && !numeric && !named);
            }
            // And it is exact for the lists it summarises.
            if matches!(PortGate::of(&ports), PortGate::Ranges { .. }) {
                prop_assert_eq!(admitted, numeric);
            }
        }
    }
}
