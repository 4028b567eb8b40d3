//! The model one resource at a time, for code that maintains it incrementally
//! (`bulkhead-calc`).
//!
//! [`Cluster::build`](crate::Cluster::build) compiles a whole snapshot. An incremental
//! calculation needs the same conversions for one resource, given the context it depends
//! on: the labels of its parent profiles for an endpoint or network set; nothing for a
//! policy (its tier is looked up by the caller). Every function here produces exactly what
//! `Cluster::build` produces for that resource in that context, and nothing here keeps
//! state.
//!
//! `Cluster::build` converts endpoints, network sets and policies with these very
//! functions, so the two paths cannot differ there; an endpoint's or network set's
//! labels come from [`endpoint_labels`] and [`network_set_labels`], which a calculation
//! also calls to relabel what it keeps when a parent's labels change. What only the
//! builder does (the cluster-wide steps: address ownership, profile precedence) is
//! checked by `bulkhead-calc`'s property test (incremental result = from-scratch result
//! over random resource sets).

use std::cmp::Ordering;
use std::net::IpAddr;

use bulkhead_api::calico::{EndpointPort, ProfileSpec, TierSpec};
use bulkhead_api::values::{Protocol, StagedAction};
use bulkhead_api::{
    DEFAULT_TIER, Kind, LabelMap, NAMESPACE_LABEL, Object, ObjectMeta, Resource, parse_cidr,
};

use crate::compile::{Policy, PolicyClass, PolicyInput, Profile, compile_policy, compile_profile};
use crate::decision::{EndpointKind, Name};
use crate::endpoint::{
    Endpoint, K8S_NAMESPACE_NAME_LABEL, Labels, NamedPort, NetworkSet, flatten_labels,
    namespace_profile_name, service_account_profile_name, workload_special_labels,
};
use crate::k8s_convert::{K8S_POLICY_ORDER, k8s_to_calico};
use crate::model::{ModelError, Tier};

/// The orchestrator of pods, as their special label names it.
const POD_ORCHESTRATOR: &str = "k8s";

/// The namespace of a namespaced resource (`default` when unset).
fn namespace_of(meta: &ObjectMeta) -> String {
    meta.namespace.clone().unwrap_or_else(|| "default".into())
}

/// The profiles whose labels an endpoint or network set inherits, in order (earlier ones
/// win). Pods: their namespace's and service account's; WorkloadEndpoints: `spec.profiles`
/// or, when empty, the namespace's and service account's; HostEndpoints: `spec.profiles`;
/// NetworkSets: their namespace's; anything else: none.
pub fn parent_profiles(r: &Resource) -> Vec<String> {
    match r {
        Resource::Pod(p) => {
            let ns = namespace_of(&p.metadata);
            let sa = p.spec.service_account_name.as_deref().unwrap_or("default");
            vec![
                namespace_profile_name(&ns),
                service_account_profile_name(&ns, sa),
            ]
        }
        Resource::WorkloadEndpoint(w) if w.spec.profiles.is_empty() => {
            let ns = namespace_of(&w.metadata);
            let mut out = vec![namespace_profile_name(&ns)];
            if !w.spec.service_account_name.is_empty() {
                out.push(service_account_profile_name(
                    &ns,
                    &w.spec.service_account_name,
                ));
            }
            out
        }
        Resource::WorkloadEndpoint(w) => w.spec.profiles.clone(),
        Resource::HostEndpoint(h) => h.spec.profiles.clone(),
        Resource::NetworkSet(s) => vec![namespace_profile_name(&namespace_of(&s.metadata))],
        _ => Vec::new(),
    }
}

/// The namespace a Pod, WorkloadEndpoint or NetworkSet makes exist (with only its name
/// label) when no Namespace resource describes it. Host-network pods count too.
pub fn implied_namespace(r: &Resource) -> Option<String> {
    match r {
        Resource::Pod(_) | Resource::WorkloadEndpoint(_) | Resource::NetworkSet(_) => {
            Some(namespace_of(r.meta()))
        }
        _ => None,
    }
}

/// The service account `(namespace, name)` a Pod (default `default`) or a
/// WorkloadEndpoint (when it names one) makes exist, unlabelled, when no ServiceAccount
/// resource describes it.
pub fn implied_service_account(r: &Resource) -> Option<(String, String)> {
    match r {
        Resource::Pod(p) => Some((
            namespace_of(&p.metadata),
            p.spec
                .service_account_name
                .clone()
                .unwrap_or_else(|| "default".into()),
        )),
        Resource::WorkloadEndpoint(w) if !w.spec.service_account_name.is_empty() => Some((
            namespace_of(&w.metadata),
            w.spec.service_account_name.clone(),
        )),
        _ => None,
    }
}

/// The labels of a Namespace resource as its profile sees them: its own, plus
/// `kubernetes.io/metadata.name`.
pub fn namespace_labels(meta: &ObjectMeta) -> LabelMap {
    let mut labels = meta.labels.clone();
    labels.insert(K8S_NAMESPACE_NAME_LABEL.into(), meta.name.clone());
    labels
}

/// The labels of a namespace that exists only because something in it refers to it.
pub fn implied_namespace_labels(namespace: &str) -> LabelMap {
    LabelMap::from([(K8S_NAMESPACE_NAME_LABEL.to_string(), namespace.to_string())])
}

/// The `(namespace, name)` of a ServiceAccount resource (namespace empty when unset, as
/// the model keys it).
pub fn service_account_key(meta: &ObjectMeta) -> (String, String) {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone(),
    )
}

/// A Tier resource as the model holds it.
pub fn tier(t: &Object<TierSpec>) -> Tier {
    Tier {
        name: t.metadata.name.as_str().into(),
        order: t.spec.order,
        default_action: t.spec.default_action.unwrap_or_default(),
    }
}

/// Tier evaluation order: by `order` (none last), then name.
pub fn tier_cmp(a: &Tier, b: &Tier) -> Ordering {
    let key = |t: &Tier| t.order.unwrap_or(f64::INFINITY);
    key(a).total_cmp(&key(b)).then_with(|| a.name.cmp(&b.name))
}

/// Policy evaluation order within one tier: by `order` (none last), then name, namespace
/// and kind.
pub fn policy_cmp(a: &Policy, b: &Policy) -> Ordering {
    let order = |p: &Policy| p.order.unwrap_or(f64::INFINITY);
    order(a)
        .total_cmp(&order(b))
        .then_with(|| a.id.name.cmp(&b.id.name))
        .then_with(|| a.id.namespace.cmp(&b.id.namespace))
        .then_with(|| a.id.kind.cmp(&b.id.kind))
}

/// A Profile resource compiled (its labels are `spec.labelsToApply`).
pub fn profile(p: &Object<ProfileSpec>) -> Result<Profile, ModelError> {
    compile_profile(&p.metadata.name, &p.spec.ingress, &p.spec.egress)
}

/// The profile of a service account that no Profile resource overrides: no rules.
pub fn service_account_profile(name: &str) -> Profile {
    Profile {
        name: name.to_string(),
        ingress: Vec::new(),
        egress: Vec::new(),
    }
}

/// Whether `r` is a staged policy with `stagedAction: Delete`: it compiles to nothing and
/// only removes the enforced policy of the same name from pending verdicts.
pub fn is_staged_delete(r: &Resource) -> bool {
    let action = match r {
        Resource::StagedGlobalNetworkPolicy(o) => o.spec.staged_action,
        Resource::StagedNetworkPolicy(o) => o.spec.staged_action,
        Resource::StagedKubernetesNetworkPolicy(o) => o.spec.staged_action,
        _ => None,
    };
    action == Some(StagedAction::Delete)
}

/// The tier a policy resource must find, or `None` (not a Calico policy, or a staged
/// `Delete`, which names no tier the model checks).
pub fn required_tier(r: &Resource) -> Option<&str> {
    if is_staged_delete(r) {
        return None;
    }
    match r {
        Resource::GlobalNetworkPolicy(o) | Resource::StagedGlobalNetworkPolicy(o) => {
            Some(o.spec.tier.as_deref().unwrap_or(DEFAULT_TIER))
        }
        Resource::NetworkPolicy(o) | Resource::StagedNetworkPolicy(o) => {
            Some(o.spec.tier.as_deref().unwrap_or(DEFAULT_TIER))
        }
        _ => None,
    }
}

/// A policy resource compiled. `None` for resources that are not policies and for staged
/// `Delete` policies (they only remove an enforced policy from pending verdicts). The tier
/// is not checked: see [`required_tier`].
pub fn policy(r: &Resource) -> Result<Option<Policy>, ModelError> {
    let kind = r.kind();
    if !kind.is_policy() || is_staged_delete(r) {
        return Ok(None);
    }
    let meta = r.meta();
    let namespace = meta.namespace.as_deref().filter(|_| kind.is_namespaced());
    let base = |tier: &'static str| PolicyInput {
        kind,
        namespace,
        name: &meta.name,
        tier,
        order: None,
        selector: None,
        namespace_selector: None,
        service_account_selector: None,
        types: &[],
        ingress: &[],
        egress: &[],
        staged: None,
        class: PolicyClass::Normal,
        apply_on_forward: false,
    };
    let compiled = match r {
        Resource::GlobalNetworkPolicy(o) | Resource::StagedGlobalNetworkPolicy(o) => {
            let s = &o.spec;
            let class = if s.do_not_track {
                PolicyClass::Untracked
            } else if s.pre_dnat {
                PolicyClass::PreDnat
            } else {
                PolicyClass::Normal
            };
            compile_policy(PolicyInput {
                tier: s.tier.as_deref().unwrap_or(DEFAULT_TIER),
                order: s.order,
                selector: s.selector.as_deref(),
                namespace_selector: s.namespace_selector.as_deref(),
                service_account_selector: s.service_account_selector.as_deref(),
                types: &s.types,
                ingress: &s.ingress,
                egress: &s.egress,
                staged: kind
                    .is_staged()
                    .then(|| s.staged_action.unwrap_or_default()),
                class,
                apply_on_forward: s.apply_on_forward,
                ..base("")
            })?
        }
        Resource::NetworkPolicy(o) | Resource::StagedNetworkPolicy(o) => {
            let s = &o.spec;
            compile_policy(PolicyInput {
                tier: s.tier.as_deref().unwrap_or(DEFAULT_TIER),
                order: s.order,
                selector: s.selector.as_deref(),
                service_account_selector: s.service_account_selector.as_deref(),
                types: &s.types,
                ingress: &s.ingress,
                egress: &s.egress,
                staged: kind
                    .is_staged()
                    .then(|| s.staged_action.unwrap_or_default()),
                ..base("")
            })?
        }
        Resource::KubernetesNetworkPolicy(o) | Resource::StagedKubernetesNetworkPolicy(o) => {
            let converted = k8s_to_calico(&o.spec);
            compile_policy(PolicyInput {
                order: Some(K8S_POLICY_ORDER),
                selector: converted.selector.as_deref(),
                types: &converted.types,
                ingress: &converted.ingress,
                egress: &converted.egress,
                staged: kind
                    .is_staged()
                    .then(|| o.spec.staged_action.unwrap_or_default()),
                ..base(DEFAULT_TIER)
            })?
        }
        _ => return Ok(None),
    };
    Ok(Some(compiled))
}

/// The endpoint a Pod (unless host-network), WorkloadEndpoint or HostEndpoint describes,
/// with its labels flattened over `labels_of(profile)` for each of its
/// [`parent_profiles`] (`None`: that profile has no labels). `None` for anything else.
pub fn endpoint<'a>(
    r: &Resource,
    labels_of: impl Fn(&str) -> Option<&'a LabelMap>,
) -> Result<Option<Endpoint>, ModelError> {
    let profiles: Vec<Name> = parent_profiles(r)
        .iter()
        .map(|p| Name::from(p.as_str()))
        .collect();
    let endpoint = match r {
        Resource::Pod(p) if !p.spec.host_network => {
            let ns = namespace_of(&p.metadata);
            let sa = p
                .spec
                .service_account_name
                .clone()
                .unwrap_or_else(|| "default".into());
            let who = format!("Pod {ns}/{}", p.metadata.name);
            let mut ips = Vec::new();
            let texts = p
                .status
                .pod_ips
                .iter()
                .map(|i| ("status.podIPs", &i.ip))
                .chain(p.status.pod_ip.iter().map(|i| ("status.podIP", i)));
            for (field, text) in texts {
                let ip = parse_ip(text, &who, field)?;
                if !ips.contains(&ip) {
                    ips.push(ip);
                }
            }
            let ports = p
                .spec
                .containers
                .iter()
                .flat_map(|c| c.ports.iter())
                .filter_map(|cp| {
                    Some(NamedPort {
                        name: cp.name.clone()?,
                        protocol: cp
                            .protocol
                            .as_deref()
                            .and_then(Protocol::parse)
                            .unwrap_or(Protocol::TCP),
                        port: cp.container_port,
                    })
                })
                .collect();
            Endpoint {
                kind: EndpointKind::Workload,
                namespace: Some(ns.into()),
                name: p.metadata.name.as_str().into(),
                service_account: Some(sa),
                orchestrator: Some(POD_ORCHESTRATOR.into()),
                own_labels: Labels::new(p.metadata.labels.clone()),
                labels: Labels::default(),
                profiles,
                ips,
                ports,
                node: p.spec.node_name.as_deref().map(Name::from),
                all_interfaces: false,
            }
        }
        Resource::WorkloadEndpoint(w) => {
            let ns = namespace_of(&w.metadata);
            let sa = (!w.spec.service_account_name.is_empty())
                .then(|| w.spec.service_account_name.clone());
            let who = format!("WorkloadEndpoint {ns}/{}", w.metadata.name);
            let ips = w
                .spec
                .ip_networks
                .iter()
                .map(|n| {
                    parse_cidr(n)
                        .map(|n| n.addr())
                        .ok_or_else(|| ModelError::BadAddress {
                            endpoint: who.clone(),
                            field: "spec.ipNetworks".into(),
                            value: n.clone(),
                        })
                })
                .collect::<Result<_, _>>()?;
            Endpoint {
                kind: EndpointKind::Workload,
                namespace: Some(ns.into()),
                name: w.metadata.name.as_str().into(),
                service_account: sa,
                orchestrator: (!w.spec.orchestrator.is_empty())
                    .then(|| w.spec.orchestrator.clone()),
                own_labels: Labels::new(w.metadata.labels.clone()),
                labels: Labels::default(),
                profiles,
                ips,
                ports: named_ports(&w.spec.ports),
                node: (!w.spec.node.is_empty()).then(|| Name::from(w.spec.node.as_str())),
                all_interfaces: false,
            }
        }
        Resource::HostEndpoint(h) => {
            let who = format!("HostEndpoint {}", h.metadata.name);
            let ips = h
                .spec
                .expected_ips
                .iter()
                .map(|t| parse_ip(t, &who, "spec.expectedIPs"))
                .collect::<Result<_, _>>()?;
            Endpoint {
                kind: EndpointKind::Host,
                namespace: None,
                name: h.metadata.name.as_str().into(),
                service_account: None,
                orchestrator: None,
                own_labels: Labels::new(h.metadata.labels.clone()),
                labels: Labels::default(),
                profiles,
                ips,
                ports: named_ports(&h.spec.ports),
                node: (!h.spec.node.is_empty()).then(|| Name::from(h.spec.node.as_str())),
                all_interfaces: h.spec.interface_name == "*",
            }
        }
        _ => return Ok(None),
    };
    let labels = Labels::new(endpoint_labels(&endpoint, labels_of));
    Ok(Some(Endpoint { labels, ..endpoint }))
}

/// The labels selectors see on `e`: its own labels over its special ones (workloads:
/// namespace, orchestrator, service account) over those of its profiles
/// (`labels_of(profile)`, earlier profiles winning). [`endpoint`] labels with this, and a
/// calculation that keeps an endpoint relabels it with this when a profile's labels
/// change, without the resource it came from.
pub fn endpoint_labels<'a>(
    e: &Endpoint,
    labels_of: impl Fn(&str) -> Option<&'a LabelMap>,
) -> LabelMap {
    let inherited: Vec<&LabelMap> = e.profiles.iter().filter_map(|p| labels_of(p)).collect();
    let special = match (e.kind, &e.namespace) {
        (EndpointKind::Workload, Some(ns)) => {
            workload_special_labels(ns, e.orchestrator.as_deref(), e.service_account.as_deref())
        }
        _ => LabelMap::new(),
    };
    flatten_labels(&e.own_labels, &special, &inherited)
}

/// The network set a GlobalNetworkSet or NetworkSet describes; a NetworkSet's labels are
/// flattened over its namespace's profile labels (`labels_of`). `None` for anything else.
pub fn network_set<'a>(
    r: &Resource,
    labels_of: impl Fn(&str) -> Option<&'a LabelMap>,
) -> Result<Option<NetworkSet>, ModelError> {
    let (Resource::GlobalNetworkSet(s) | Resource::NetworkSet(s)) = r else {
        return Ok(None);
    };
    let kind = r.kind();
    let namespace = (kind == Kind::NetworkSet).then(|| namespace_of(&s.metadata));
    let nets = s
        .spec
        .nets
        .iter()
        .map(|n| {
            parse_cidr(n).ok_or_else(|| ModelError::BadAddress {
                endpoint: format!("{} {}", kind.kind_name(), s.metadata.name),
                field: "spec.nets".into(),
                value: n.clone(),
            })
        })
        .collect::<Result<_, _>>()?;
    let set = NetworkSet {
        namespace,
        name: s.metadata.name.clone(),
        own_labels: Labels::new(s.metadata.labels.clone()),
        labels: Labels::default(),
        nets,
    };
    let labels = Labels::new(network_set_labels(&set, labels_of));
    Ok(Some(NetworkSet { labels, ..set }))
}

/// The labels selectors see on `s`: a NetworkSet's own labels over its namespace label
/// over its namespace profile's labels (`labels_of`); a GlobalNetworkSet's own labels.
/// [`network_set`] labels with this; a calculation relabels with it when a namespace's
/// labels change.
pub fn network_set_labels<'a>(
    s: &NetworkSet,
    labels_of: impl Fn(&str) -> Option<&'a LabelMap>,
) -> LabelMap {
    match &s.namespace {
        Some(ns) => {
            let special = LabelMap::from([(NAMESPACE_LABEL.to_string(), ns.clone())]);
            let profile = namespace_profile_name(ns);
            let inherited: Vec<&LabelMap> = labels_of(&profile).into_iter().collect();
            flatten_labels(&s.own_labels, &special, &inherited)
        }
        None => LabelMap::clone(&s.own_labels),
    }
}

fn named_ports(ports: &[EndpointPort]) -> Vec<NamedPort> {
    ports
        .iter()
        .map(|p| NamedPort {
            name: p.name.clone(),
            protocol: p.protocol,
            port: p.port,
        })
        .collect()
}

fn parse_ip(text: &str, who: &str, field: &str) -> Result<IpAddr, ModelError> {
    text.parse().map_err(|_| ModelError::BadAddress {
        endpoint: who.to_string(),
        field: field.to_string(),
        value: text.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Cluster;
    use bulkhead_api::load_str;

    fn resources(text: &str) -> Vec<Resource> {
        load_str("test", text)
            .expect("valid resources")
            .into_iter()
            .map(|l| l.resource)
            .collect()
    }

    #[test]
    fn one_resource_converts_as_the_whole_model_does() {
        let rs = resources(
            r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {env: prod}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec:
  serviceAccountName: front
  containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]
status: {podIP: 10.0.0.1}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: p, namespace: shop}
spec:
  order: 5
  selector: app == 'web'
  ingress: [{action: Allow, source: {selector: app == 'db'}}]
"#,
        );
        let cluster = Cluster::build(&rs).expect("model builds");
        let ns = namespace_labels(rs[0].meta());
        let ns_profile = crate::endpoint::namespace_profile_labels("shop", &ns);
        let sa_profile = crate::endpoint::service_account_profile_labels("front", &LabelMap::new());
        let labels_of = |p: &str| match p {
            "kns.shop" => Some(&ns_profile),
            "ksa.shop.front" => Some(&sa_profile),
            _ => None,
        };
        let e = endpoint(&rs[1], labels_of)
            .expect("converts")
            .expect("an endpoint");
        let want = cluster.workload("shop", "web").expect("in the model");
        assert_eq!(e.labels, want.labels);
        assert_eq!(e.ips, want.ips);
        assert_eq!(e.ports, want.ports);
        assert_eq!(e.profiles, want.profiles);
        assert_eq!(implied_namespace(&rs[1]).as_deref(), Some("shop"));
        assert_eq!(
            implied_service_account(&rs[1]),
            Some(("shop".into(), "front".into()))
        );
        let p = policy(&rs[2]).expect("compiles").expect("a policy");
        let want = &cluster.policies()[0];
        assert_eq!(p.selector, want.selector);
        assert_eq!(p.order, want.order);
        assert_eq!(required_tier(&rs[2]), Some("default"));
        assert_eq!(policy_cmp(&p, want), Ordering::Equal);
    }
}
