//! Defaulting and validation, as Calico's API server and validator apply them.
//!
//! Validation collects every problem with its field path; it never stops at the first.

use std::fmt;
use std::net::IpAddr;

use bulkhead_selector::Selector;
use ipnet::IpNet;

use crate::calico::{
    EntityRule, FelixConfigurationSpec, GlobalNetworkPolicySpec, HostEndpointSpec,
    NetworkPolicySpec, Rule, WorkloadEndpointSpec,
};
use crate::k8s::{K8sNetworkPolicySpec, K8sPolicyPort, LabelSelector, SelectorOperator};
use crate::meta::{LabelMap, ObjectMeta};
use crate::resource::{Kind, Resource};
use crate::values::{Action, PolicyType, Port, Protocol, StagedAction, TierDefaultAction};

/// The default tier.
pub const DEFAULT_TIER: &str = "default";

/// One validation problem: the field path and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Field path, e.g. `spec.ingress[0].protocol`.
    pub path: String,
    /// What is wrong and what was expected.
    pub message: String,
}

/// Applies defaults to `resource` and returns every validation error (empty = valid).
pub fn validate(resource: &mut Resource) -> Vec<FieldError> {
    let kind = resource.kind();
    let mut c = Checker::default();
    match resource {
        Resource::Tier(o) => {
            c.meta(&mut o.metadata, kind);
            c.dns_label("metadata.name", &o.metadata.name, "a tier name");
            o.spec.default_action.get_or_insert(TierDefaultAction::Deny);
            c.order("spec.order", o.spec.order);
        }
        Resource::GlobalNetworkPolicy(o) | Resource::StagedGlobalNetworkPolicy(o) => {
            c.meta(&mut o.metadata, kind);
            c.global_policy(&mut o.spec, kind);
        }
        Resource::NetworkPolicy(o) | Resource::StagedNetworkPolicy(o) => {
            c.meta(&mut o.metadata, kind);
            c.namespaced_policy(&mut o.spec, kind);
        }
        Resource::StagedKubernetesNetworkPolicy(o) | Resource::KubernetesNetworkPolicy(o) => {
            c.meta(&mut o.metadata, kind);
            c.k8s_policy(&mut o.spec, kind);
        }
        Resource::GlobalNetworkSet(o) | Resource::NetworkSet(o) => {
            c.meta(&mut o.metadata, kind);
            if o.metadata.labels.contains_key(NAMESPACE_LABEL) {
                c.err(
                    format!("metadata.labels.{NAMESPACE_LABEL}"),
                    "this label is set by Bulkhead and may not be set on network sets",
                );
            }
            for (i, net) in o.spec.nets.iter().enumerate() {
                c.cidr(format!("spec.nets[{i}]"), net);
            }
        }
        Resource::HostEndpoint(o) => {
            c.meta(&mut o.metadata, kind);
            c.host_endpoint(&o.spec);
        }
        Resource::WorkloadEndpoint(o) => {
            c.meta(&mut o.metadata, kind);
            c.workload_endpoint(&o.spec);
        }
        Resource::Profile(o) => {
            c.meta(&mut o.metadata, kind);
            c.rules("spec.ingress", &o.spec.ingress, false);
            c.rules("spec.egress", &o.spec.egress, true);
            c.labels("spec.labelsToApply", &o.spec.labels_to_apply);
        }
        Resource::Namespace(m) => {
            c.meta(m, kind);
            c.dns_label("metadata.name", &m.name, "a namespace name");
        }
        Resource::ServiceAccount(m) => c.meta(m, kind),
        Resource::FelixConfiguration(o) => {
            c.meta(&mut o.metadata, kind);
            c.felix_configuration(&o.spec);
        }
        Resource::Node(o) => {
            c.meta(&mut o.metadata, kind);
            for (path, address) in o.spec.addresses() {
                if parse_cidr(address).is_none() {
                    c.err(
                        path,
                        format!("{address:?} is not an address: expected e.g. 10.66.0.1, 10.66.0.1/24 or fd66::1/64"),
                    );
                }
            }
        }
        Resource::Pod(p) => {
            c.meta(&mut p.metadata, kind);
            if let Some(ip) = &p.status.pod_ip {
                c.ip("status.podIP", ip);
            }
            for (i, ip) in p.status.pod_ips.iter().enumerate() {
                c.ip(&format!("status.podIPs[{i}].ip"), &ip.ip);
            }
            for (i, ctr) in p.spec.containers.iter().enumerate() {
                for (j, port) in ctr.ports.iter().enumerate() {
                    if let Some(proto) = &port.protocol {
                        c.k8s_protocol(&format!("spec.containers[{i}].ports[{j}].protocol"), proto);
                    }
                }
            }
        }
    }
    c.errors
}

/// Label put on namespaced endpoints and network sets.
pub const NAMESPACE_LABEL: &str = "projectcalico.org/namespace";

/// A field path written out only when an error needs it (validating a valid rule then
/// formats nothing).
#[derive(Clone, Copy)]
enum FieldPath<'a> {
    /// A path given whole, e.g. `spec.ingress`.
    Root(&'a str),
    /// A field of a path: `{path}.{field}`.
    Field(&'a FieldPath<'a>, &'a str),
    /// An element of a list: `{path}[{index}]`.
    Index(&'a FieldPath<'a>, usize),
}

impl fmt::Display for FieldPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldPath::Root(path) => f.write_str(path),
            FieldPath::Field(path, field) => write!(f, "{path}.{field}"),
            FieldPath::Index(path, index) => write!(f, "{path}[{index}]"),
        }
    }
}

#[derive(Default)]
struct Checker {
    errors: Vec<FieldError>,
}

impl Checker {
    fn err(&mut self, path: impl fmt::Display, message: impl Into<String>) {
        self.errors.push(FieldError {
            path: path.to_string(),
            message: message.into(),
        });
    }

    fn meta(&mut self, meta: &mut ObjectMeta, kind: Kind) {
        if meta.name.is_empty() {
            self.err("metadata.name", "required: every resource needs a name");
        } else if !is_dns_subdomain(&meta.name) {
            self.err(
                "metadata.name",
                format!(
                    "{:?} is not a valid name: expected lower-case letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters",
                    meta.name
                ),
            );
        }
        if kind.is_namespaced() {
            let ns = meta.namespace.get_or_insert_with(|| "default".to_string());
            if !is_dns_label(ns) {
                self.err(
                    "metadata.namespace",
                    format!("{ns:?} is not a valid namespace name: expected a DNS label (lower-case letters, digits and '-', at most 63 characters)"),
                );
            }
        } else if let Some(ns) = &meta.namespace
            && !ns.is_empty()
        {
            self.err(
                "metadata.namespace",
                format!(
                    "{} is not namespaced: remove metadata.namespace",
                    kind.kind_name()
                ),
            );
        }
        self.labels("metadata.labels", &meta.labels);
    }

    fn labels(&mut self, path: &str, labels: &LabelMap) {
        for (k, v) in labels {
            if !is_qualified_name(k) {
                self.err(
                    format!("{path}.{k}"),
                    "invalid label key: expected an optional DNS-subdomain prefix and '/', then a name of at most 63 characters of [A-Za-z0-9_.-] starting and ending alphanumeric",
                );
            }
            if !is_label_value(v) {
                self.err(
                    format!("{path}.{k}"),
                    format!("invalid label value {v:?}: expected at most 63 characters of [A-Za-z0-9_.-] starting and ending alphanumeric, or empty"),
                );
            }
        }
    }

    fn dns_label(&mut self, path: &str, value: &str, what: &str) {
        if !value.is_empty() && !is_dns_label(value) {
            self.err(
                path,
                format!("{value:?} is not valid as {what}: expected a DNS label (lower-case letters, digits and '-', at most 63 characters, no dots)"),
            );
        }
    }

    fn order(&mut self, path: &str, order: Option<f64>) {
        if order.is_some_and(|o| !o.is_finite()) {
            self.err(path, "expected a finite number");
        }
    }

    fn selector(
        &mut self,
        path: impl fmt::Display,
        text: &str,
        allow_global: bool,
    ) -> Option<Selector> {
        match Selector::parse(text) {
            Ok(sel) => {
                if sel.contains_global() && !(allow_global && sel.is_global()) {
                    let why = if allow_global {
                        "global() may only be used on its own"
                    } else {
                        "global() is only allowed in a rule's namespaceSelector"
                    };
                    self.err(path, why);
                }
                Some(sel)
            }
            Err(e) => {
                self.err(path, format!("invalid selector {text:?}: {e}"));
                None
            }
        }
    }

    fn types(&mut self, types: &mut Vec<PolicyType>, has_ingress: bool, has_egress: bool) {
        if types.is_empty() {
            match (has_ingress, has_egress) {
                (_, false) => types.push(PolicyType::Ingress),
                (false, true) => types.push(PolicyType::Egress),
                (true, true) => types.extend([PolicyType::Ingress, PolicyType::Egress]),
            }
        } else if types.len() == 2 && types[0] == types[1] {
            self.err(
                "spec.types",
                "duplicate type: list Ingress and/or Egress once each",
            );
        }
    }

    fn performance_hints(&mut self, hints: &[String]) {
        for (i, h) in hints.iter().enumerate() {
            if h != "AssumeNeededOnEveryNode" {
                self.err(
                    format!("spec.performanceHints[{i}]"),
                    format!("unknown hint {h:?}: expected AssumeNeededOnEveryNode"),
                );
            }
        }
    }

    fn staged_action(&mut self, kind: Kind, action: &mut Option<StagedAction>) -> StagedAction {
        if kind.is_staged() {
            *action.get_or_insert(StagedAction::Set)
        } else {
            if action.is_some() {
                self.err(
                    "spec.stagedAction",
                    format!(
                        "only staged policies have stagedAction; {} does not",
                        kind.kind_name()
                    ),
                );
            }
            StagedAction::Set
        }
    }

    fn namespaced_policy(&mut self, spec: &mut NetworkPolicySpec, kind: Kind) {
        let staged = self.staged_action(kind, &mut spec.staged_action);
        if staged == StagedAction::Delete {
            let only_tier = NetworkPolicySpec {
                tier: spec.tier.clone(),
                staged_action: spec.staged_action,
                ..Default::default()
            };
            if *spec != only_tier {
                self.err(
                    "spec",
                    "stagedAction Delete previews removing a policy: every spec field but tier and stagedAction must be empty",
                );
            }
            return;
        }
        let tier = spec.tier.get_or_insert_with(|| DEFAULT_TIER.to_string());
        let tier = tier.clone();
        self.dns_label("spec.tier", &tier, "a tier name");
        self.order("spec.order", spec.order);
        if let Some(s) = &spec.selector {
            self.selector("spec.selector", s, false);
        }
        if let Some(s) = &spec.service_account_selector {
            self.selector("spec.serviceAccountSelector", s, false);
        }
        self.types(
            &mut spec.types,
            !spec.ingress.is_empty(),
            !spec.egress.is_empty(),
        );
        self.rules("spec.ingress", &spec.ingress, false);
        self.rules("spec.egress", &spec.egress, true);
        self.performance_hints(&spec.performance_hints);
    }

    fn global_policy(&mut self, spec: &mut GlobalNetworkPolicySpec, kind: Kind) {
        let staged = self.staged_action(kind, &mut spec.staged_action);
        if staged == StagedAction::Delete {
            let only_tier = GlobalNetworkPolicySpec {
                tier: spec.tier.clone(),
                staged_action: spec.staged_action,
                ..Default::default()
            };
            if *spec != only_tier {
                self.err(
                    "spec",
                    "stagedAction Delete previews removing a policy: every spec field but tier and stagedAction must be empty",
                );
            }
            return;
        }
        let tier = spec
            .tier
            .get_or_insert_with(|| DEFAULT_TIER.to_string())
            .clone();
        self.dns_label("spec.tier", &tier, "a tier name");
        self.order("spec.order", spec.order);
        if let Some(s) = &spec.selector {
            self.selector("spec.selector", s, false);
        }
        if let Some(s) = &spec.namespace_selector {
            self.selector("spec.namespaceSelector", s, false);
        }
        if let Some(s) = &spec.service_account_selector {
            self.selector("spec.serviceAccountSelector", s, false);
        }
        self.types(
            &mut spec.types,
            !spec.ingress.is_empty(),
            !spec.egress.is_empty(),
        );
        self.rules("spec.ingress", &spec.ingress, false);
        self.rules("spec.egress", &spec.egress, true);
        self.performance_hints(&spec.performance_hints);
        if spec.pre_dnat && spec.do_not_track {
            self.err("spec.preDNAT", "preDNAT and doNotTrack cannot both be true");
        }
        if spec.pre_dnat && (!spec.egress.is_empty() || spec.types.contains(&PolicyType::Egress)) {
            self.err(
                "spec.preDNAT",
                "a preDNAT policy governs ingress only: remove egress rules and the Egress type",
            );
        }
        if (spec.pre_dnat || spec.do_not_track) && !spec.apply_on_forward {
            self.err(
                "spec.applyOnForward",
                "must be true when preDNAT or doNotTrack is set",
            );
        }
    }

    fn k8s_policy(&mut self, spec: &mut K8sNetworkPolicySpec, kind: Kind) {
        let staged = self.staged_action(kind, &mut spec.staged_action);
        if staged == StagedAction::Delete {
            return;
        }
        self.k8s_selector("spec.podSelector", &spec.pod_selector);
        if spec.policy_types.is_empty() {
            spec.policy_types.push(PolicyType::Ingress);
            if !spec.egress.is_empty() {
                spec.policy_types.push(PolicyType::Egress);
            }
        } else if spec.policy_types.len() == 2 && spec.policy_types[0] == spec.policy_types[1] {
            self.err(
                "spec.policyTypes",
                "duplicate type: list Ingress and/or Egress once each",
            );
        }
        for (i, r) in spec.ingress.iter().enumerate() {
            let path = format!("spec.ingress[{i}]");
            for (j, peer) in r.from.iter().enumerate() {
                self.k8s_peer(&format!("{path}.from[{j}]"), peer);
            }
            self.k8s_ports(&path, &r.ports);
        }
        for (i, r) in spec.egress.iter().enumerate() {
            let path = format!("spec.egress[{i}]");
            for (j, peer) in r.to.iter().enumerate() {
                self.k8s_peer(&format!("{path}.to[{j}]"), peer);
            }
            self.k8s_ports(&path, &r.ports);
        }
    }

    fn k8s_peer(&mut self, path: &str, peer: &crate::k8s::K8sPeer) {
        if let Some(b) = &peer.ip_block {
            if peer.pod_selector.is_some() || peer.namespace_selector.is_some() {
                self.err(
                    path,
                    "ipBlock cannot be combined with podSelector or namespaceSelector",
                );
            }
            let cidr = self.cidr(format!("{path}.ipBlock.cidr"), &b.cidr);
            for (k, e) in b.except.iter().enumerate() {
                let epath = format!("{path}.ipBlock.except[{k}]");
                if let (Some(outer), Some(inner)) = (cidr, self.cidr(&epath, e))
                    && !(outer.contains(&inner.network())
                        && inner.prefix_len() >= outer.prefix_len())
                {
                    self.err(epath, format!("{e} is not inside {}", b.cidr));
                }
            }
        } else if peer.pod_selector.is_none() && peer.namespace_selector.is_none() {
            self.err(
                path,
                "a peer needs one of podSelector, namespaceSelector or ipBlock",
            );
        }
        if let Some(s) = &peer.pod_selector {
            self.k8s_selector(&format!("{path}.podSelector"), s);
        }
        if let Some(s) = &peer.namespace_selector {
            self.k8s_selector(&format!("{path}.namespaceSelector"), s);
        }
    }

    fn k8s_ports(&mut self, path: &str, ports: &[K8sPolicyPort]) {
        for (j, p) in ports.iter().enumerate() {
            let ppath = format!("{path}.ports[{j}]");
            if let Some(proto) = &p.protocol {
                self.k8s_protocol(&format!("{ppath}.protocol"), proto);
            }
            match (&p.port, p.end_port) {
                (Some(crate::k8s::IntOrString::Int(start)), Some(end)) if end < *start => {
                    self.err(format!("{ppath}.endPort"), "must not be below port")
                }
                (Some(crate::k8s::IntOrString::String(_)) | None, Some(_)) => {
                    self.err(format!("{ppath}.endPort"), "endPort needs a numeric port")
                }
                (Some(crate::k8s::IntOrString::String(name)), None)
                    if !matches!(Port::parse(name), Ok(Port::Named(_))) =>
                {
                    self.err(
                        format!("{ppath}.port"),
                        format!("{name:?} is not a valid port name"),
                    );
                }
                _ => {}
            }
        }
    }

    fn k8s_protocol(&mut self, path: &str, proto: &str) {
        if !matches!(proto, "TCP" | "UDP" | "SCTP") {
            self.err(
                path,
                format!("unsupported protocol {proto:?}: expected TCP, UDP or SCTP"),
            );
        }
    }

    fn k8s_selector(&mut self, path: &str, sel: &LabelSelector) {
        self.labels(&format!("{path}.matchLabels"), &sel.match_labels);
        for (i, e) in sel.match_expressions.iter().enumerate() {
            let p = format!("{path}.matchExpressions[{i}]");
            if !is_qualified_name(&e.key) {
                self.err(
                    format!("{p}.key"),
                    format!("{:?} is not a valid label key", e.key),
                );
            }
            match e.operator {
                SelectorOperator::In | SelectorOperator::NotIn if e.values.is_empty() => self.err(
                    format!("{p}.values"),
                    "In and NotIn need at least one value",
                ),
                SelectorOperator::Exists | SelectorOperator::DoesNotExist
                    if !e.values.is_empty() =>
                {
                    self.err(
                        format!("{p}.values"),
                        "Exists and DoesNotExist take no values",
                    )
                }
                _ => {}
            }
        }
    }

    fn rules(&mut self, path: &str, rules: &[Rule], egress: bool) {
        if rules.len() > 1024 {
            self.err(path, "at most 1024 rules per direction");
        }
        for (i, r) in rules.iter().enumerate() {
            self.rule(&FieldPath::Index(&FieldPath::Root(path), i), r, egress);
        }
    }

    fn rule(&mut self, path: &FieldPath<'_>, r: &Rule, egress: bool) {
        if let Some(v) = r.ip_version
            && v != 4
            && v != 6
        {
            self.err(format!("{path}.ipVersion"), "expected 4 or 6");
        }
        for (field, icmp) in [("icmp", &r.icmp), ("notICMP", &r.not_icmp)] {
            let Some(icmp) = icmp else { continue };
            let p = format!("{path}.{field}");
            let proto = r.protocol;
            if !matches!(proto, Some(Protocol::ICMP | Protocol::ICMPV6)) {
                self.err(&p, "ICMP type/code matches need protocol ICMP or ICMPv6");
            }
            if icmp.code.is_some() && icmp.icmp_type.is_none() {
                self.err(format!("{p}.code"), "code needs a type");
            }
            if icmp.icmp_type == Some(255) {
                self.err(format!("{p}.type"), "expected 0-254");
            }
        }
        match (r.protocol, r.ip_version) {
            (Some(Protocol::ICMP), Some(6)) => self.err(
                format!("{path}.protocol"),
                "ICMP is IPv4; use ICMPv6 with ipVersion 6",
            ),
            (Some(Protocol::ICMPV6), Some(4)) => self.err(
                format!("{path}.protocol"),
                "ICMPv6 is IPv6; use ICMP with ipVersion 4",
            ),
            _ => {}
        }
        let mut family = r.ip_version;
        self.entity(
            &FieldPath::Field(path, "source"),
            &r.source,
            r.protocol,
            &mut family,
        );
        self.entity(
            &FieldPath::Field(path, "destination"),
            &r.destination,
            r.protocol,
            &mut family,
        );
        if r.http.is_some() {
            if r.action != Action::Allow {
                self.err(
                    format!("{path}.http"),
                    "HTTP matches are only allowed on Allow rules",
                );
            }
            if r.protocol.is_some_and(|p| p != Protocol::TCP) {
                self.err(
                    format!("{path}.http"),
                    "HTTP matches need protocol TCP (or none)",
                );
            }
            if egress {
                self.err(
                    format!("{path}.http"),
                    "HTTP matches are not allowed in egress rules",
                );
            }
        }
    }

    fn entity(
        &mut self,
        path: &FieldPath<'_>,
        e: &EntityRule,
        protocol: Option<Protocol>,
        family: &mut Option<u8>,
    ) {
        for (field, list) in [("nets", &e.nets), ("notNets", &e.not_nets)] {
            if list.len() > 256 {
                self.err(format!("{path}.{field}"), "at most 256 CIDRs");
            }
            for (i, n) in list.iter().enumerate() {
                let list_path = FieldPath::Field(path, field);
                let p = FieldPath::Index(&list_path, i);
                let Some(net) = self.cidr(p, n) else {
                    continue;
                };
                let v = if net.addr().is_ipv4() { 4 } else { 6 };
                match family {
                    Some(f) if *f != v => self.err(
                        p,
                        format!(
                            "IPv{v} CIDR in a rule that is already IPv{f} (ipVersion or other nets)"
                        ),
                    ),
                    _ => *family = Some(v),
                }
                if field == "notNets" && net.prefix_len() == 0 {
                    self.err(p, "a catch-all notNets would match nothing; remove it");
                }
            }
        }
        if let Some(s) = &e.selector {
            self.selector(FieldPath::Field(path, "selector"), s, false);
        }
        if let Some(s) = &e.not_selector {
            self.selector(FieldPath::Field(path, "notSelector"), s, false);
        }
        if let Some(s) = &e.namespace_selector {
            self.selector(FieldPath::Field(path, "namespaceSelector"), s, true);
        }
        if let Some(sa) = &e.service_accounts
            && let Some(s) = &sa.selector
        {
            self.selector(FieldPath::Field(path, "serviceAccounts.selector"), s, false);
        }
        if e.services.is_some() {
            self.err(
                format!("{path}.services"),
                "service matches need a model of Kubernetes Services, which Bulkhead does not have yet: use selectors or nets",
            );
        }
        for (field, ports) in [("ports", &e.ports), ("notPorts", &e.not_ports)] {
            if ports.len() > 50 {
                self.err(format!("{path}.{field}"), "at most 50 ports");
            }
            let numeric = ports.iter().any(|p| matches!(p, Port::Range { .. }));
            if numeric && !protocol.is_some_and(Protocol::supports_ports) {
                self.err(
                    format!("{path}.{field}"),
                    "numeric ports need protocol TCP, UDP or SCTP",
                );
            } else if !ports.is_empty() && protocol.is_some_and(|p| !p.supports_ports()) {
                self.err(
                    format!("{path}.{field}"),
                    "this protocol has no ports: use TCP, UDP or SCTP",
                );
            }
        }
    }

    fn cidr(&mut self, path: impl fmt::Display, text: &str) -> Option<IpNet> {
        match parse_cidr(text) {
            Some(n) => Some(n),
            None => {
                self.err(
                    path,
                    format!("{text:?} is not a CIDR: expected e.g. 10.0.0.0/8, 2001:db8::/32 or a single address"),
                );
                None
            }
        }
    }

    fn ip(&mut self, path: &str, text: &str) {
        if text.parse::<IpAddr>().is_err() {
            self.err(path, format!("{text:?} is not an IP address"));
        }
    }

    fn host_endpoint(&mut self, spec: &HostEndpointSpec) {
        if spec.node.is_empty() {
            self.err(
                "spec.node",
                "required: the node this host endpoint belongs to",
            );
        }
        let iface = &spec.interface_name;
        if iface.is_empty() && spec.expected_ips.is_empty() {
            self.err(
                "spec.interfaceName",
                "set interfaceName (or \"*\"), or expectedIPs, or both",
            );
        }
        if iface.len() > 15 {
            self.err(
                "spec.interfaceName",
                "interface names have at most 15 characters",
            );
        }
        for (i, ip) in spec.expected_ips.iter().enumerate() {
            self.ip(&format!("spec.expectedIPs[{i}]"), ip);
        }
        self.endpoint_ports(&spec.ports);
    }

    fn felix_configuration(&mut self, spec: &FelixConfigurationSpec) {
        let lists = [
            (
                "failsafeInboundHostPorts",
                &spec.failsafe_inbound_host_ports,
            ),
            (
                "failsafeOutboundHostPorts",
                &spec.failsafe_outbound_host_ports,
            ),
        ];
        for (field, ports) in lists {
            for (i, p) in ports.iter().flatten().enumerate() {
                let path = format!("spec.{field}[{i}]");
                if let Some(protocol) = p.protocol
                    && ![Protocol::TCP, Protocol::UDP, Protocol::SCTP].contains(&protocol)
                {
                    self.err(
                        format!("{path}.protocol"),
                        format!("failsafe ports are TCP, UDP or SCTP, not {protocol}"),
                    );
                }
                if p.port == 0 {
                    self.err(format!("{path}.port"), "expected a port 1-65535");
                }
                if let Some(net) = &p.net {
                    self.cidr(format!("{path}.net"), net);
                }
            }
        }
    }

    fn workload_endpoint(&mut self, spec: &WorkloadEndpointSpec) {
        for (i, n) in spec.ip_networks.iter().enumerate() {
            self.cidr(format!("spec.ipNetworks[{i}]"), n);
        }
        self.endpoint_ports(&spec.ports);
    }

    fn endpoint_ports(&mut self, ports: &[crate::calico::EndpointPort]) {
        for (i, p) in ports.iter().enumerate() {
            if !matches!(Port::parse(&p.name), Ok(Port::Named(_))) {
                self.err(format!("spec.ports[{i}].name"), "expected a port name");
            }
            if !p.protocol.supports_ports() {
                self.err(
                    format!("spec.ports[{i}].protocol"),
                    "expected TCP, UDP or SCTP",
                );
            }
        }
    }
}

/// Parses a CIDR or a bare address (as a host prefix). Host bits are kept as written.
pub fn parse_cidr(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn is_label_value(s: &str) -> bool {
    s.is_empty() || is_label_name(s)
}

fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

fn is_qualified_name(s: &str) -> bool {
    match s.split_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_label_name(name),
        None => is_label_name(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_labels() {
        assert!(is_dns_label("kube-dns"));
        assert!(!is_dns_label("Kube"));
        assert!(!is_dns_label("a.b"));
        assert!(is_dns_subdomain("knp.default.x"));
        assert!(is_qualified_name("projectcalico.org/name"));
        assert!(is_qualified_name("app"));
        assert!(!is_qualified_name("/app"));
        assert!(!is_qualified_name("a/b/c"));
        assert!(is_label_value(""));
        assert!(!is_label_value("-x"));
    }

    #[test]
    fn cidrs_accept_bare_addresses() {
        assert_eq!(parse_cidr("10.0.0.1").map(|n| n.prefix_len()), Some(32));
        assert_eq!(parse_cidr("fd00::/8").map(|n| n.prefix_len()), Some(8));
        assert!(parse_cidr("10.0.0.0/33").is_none());
    }
}
