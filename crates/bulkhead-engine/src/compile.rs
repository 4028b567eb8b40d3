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
use bulkhead_selector::{Labels, Selector};
use ipnet::IpNet;

use crate::decision::PolicyRef;
use crate::endpoint::{NAMESPACE_PREFIX, SERVICE_ACCOUNT_LABEL, SERVICE_ACCOUNT_PREFIX};
use crate::model::ModelError;

/// Which dataplane phase a policy runs in (host endpoints only have the first two).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyClass {
    /// `doNotTrack`: before connection tracking; tiers end in Pass; no profiles.
    Untracked,
    /// `preDNAT`: ingress before DNAT; tiers end in Pass; no profiles.
    PreDnat,
    /// Every other policy.
    Normal,
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
    /// Dataplane phase.
    pub class: PolicyClass,
}

/// A compiled rule.
#[derive(Debug, Clone)]
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
    /// Source criteria.
    pub src: Entity,
    /// Destination criteria.
    pub dst: Entity,
}

/// Compiled source or destination criteria.
#[derive(Debug, Clone)]
pub struct Entity {
    /// Address in any of these.
    pub nets: Vec<IpNet>,
    /// Address in none of these.
    pub not_nets: Vec<IpNet>,
    /// Combined positive selector (namespace, selector, service accounts).
    pub selector: Option<Selector>,
    /// Negative selector (never namespaced).
    pub not_selector: Option<Selector>,
    /// Port in any of these (numeric or named).
    pub ports: Vec<Port>,
    /// Port in none of these.
    pub not_ports: Vec<Port>,
    /// Protocol named ports are looked up with (the rule's, default TCP).
    pub named_port_protocol: Protocol,
}

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
}

/// Compiles one policy.
pub fn compile_policy(p: PolicyInput<'_>) -> Result<Policy, ModelError> {
    let id = PolicyRef {
        kind: p.kind,
        namespace: p.namespace.map(str::to_string),
        name: p.name.to_string(),
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
        rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                compile_rule(r, p.namespace).map_err(|e| ctx(&format!("{field}[{i}]"), e))
            })
            .collect::<Result<Vec<_>, _>>()
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
        rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                compile_rule(r, None).map_err(|e| ModelError::Compile {
                    policy: format!("Profile {name}"),
                    field: format!("{field}[{i}]"),
                    message: e,
                })
            })
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(Profile {
        name: name.to_string(),
        ingress: rules(ingress, "spec.ingress")?,
        egress: rules(egress, "spec.egress")?,
    })
}

/// A profile with one rule that allows everything in both directions.
pub fn allow_all_profile(name: &str) -> Profile {
    let allow = Rule {
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
    Ok(Rule {
        action: r.action,
        ip_version: r.ip_version,
        protocol: r.protocol,
        not_protocol: r.not_protocol,
        icmp: r.icmp,
        not_icmp: r.not_icmp,
        src: compile_entity(&r.source, namespace, named_port_protocol)?,
        dst: compile_entity(&r.destination, namespace, named_port_protocol)?,
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
    })
}

/// What a flow's address looks like to rule matching: the address and the label holders
/// (endpoints and network sets) that contain it.
pub struct Address<'a> {
    /// The address.
    pub ip: IpAddr,
    /// The port on this side, when known.
    pub port: Option<u16>,
    /// Endpoints with this address: their labels and named ports.
    pub endpoints: Vec<(&'a dyn Labels, &'a [crate::endpoint::NamedPort])>,
    /// Network sets containing this address.
    pub sets: Vec<&'a dyn Labels>,
}

impl Address<'_> {
    fn matches(&self, sel: &Selector) -> bool {
        self.endpoints.iter().any(|(l, _)| sel.matches(*l))
            || self.sets.iter().any(|l| sel.matches(*l))
    }

    fn has_named_port(
        &self,
        name: &str,
        protocol: Protocol,
        flow_protocol: Protocol,
        sel: Option<&Selector>,
    ) -> bool {
        let Some(port) = self.port else { return false };
        protocol == flow_protocol
            && self.endpoints.iter().any(|(labels, ports)| {
                sel.is_none_or(|s| s.matches(*labels))
                    && ports
                        .iter()
                        .any(|p| p.name == name && p.protocol == protocol && p.port == port)
            })
    }
}

impl Entity {
    /// True if `addr` (with its port) meets every criterion.
    pub fn matches(&self, addr: &Address<'_>, flow_protocol: Protocol) -> bool {
        if !self.nets.is_empty() && !self.nets.iter().any(|n| n.contains(&addr.ip)) {
            return false;
        }
        if self.not_nets.iter().any(|n| n.contains(&addr.ip)) {
            return false;
        }
        if let Some(sel) = &self.selector
            && !addr.matches(sel)
        {
            return false;
        }
        if let Some(sel) = &self.not_selector
            && addr.matches(sel)
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
                    self.selector.as_ref(),
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
        self.src.matches(src, flow.protocol) && self.dst.matches(dst, flow.protocol)
    }
}
