//! Endpoints and network sets as the engine sees them: addresses, named ports, profiles and
//! the full label map that selectors are evaluated against.
//!
//! Labels are flattened once, at build time, exactly as Calico's label inheritance presents
//! them to selectors: the endpoint's own labels win; then the special labels
//! (`projectcalico.org/namespace`, `…/orchestrator`, `…/serviceaccount`); then the labels
//! of its profiles (`pcns.*` from the namespace, `pcsa.*` from the service account).

use std::net::IpAddr;
use std::sync::Arc;

use bulkhead_api::values::Protocol;
use bulkhead_api::{LabelMap, NAMESPACE_LABEL};
use ipnet::IpNet;

use crate::compile::PolicyClass;
use crate::decision::{EndpointKind, EndpointRef, Name};

/// `projectcalico.org/orchestrator`.
pub const ORCHESTRATOR_LABEL: &str = "projectcalico.org/orchestrator";
/// `projectcalico.org/serviceaccount`.
pub const SERVICE_ACCOUNT_LABEL: &str = "projectcalico.org/serviceaccount";
/// `projectcalico.org/name` (on namespace and service-account profiles).
pub const NAME_LABEL: &str = "projectcalico.org/name";
/// Prefix of namespace labels inherited by endpoints.
pub const NAMESPACE_PREFIX: &str = "pcns.";
/// Prefix of service-account labels inherited by endpoints.
pub const SERVICE_ACCOUNT_PREFIX: &str = "pcsa.";
/// Profile that allows everything (given to model hosts).
pub const DEFAULT_ALLOW_PROFILE: &str = "projectcalico-default-allow";
/// Label Kubernetes puts on every namespace.
pub const K8S_NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A label map that endpoints with the same labels can share (most replicas of a
/// workload carry the same ones): an incremental calculation interns them, so that a
/// cluster's memory grows with its distinct label sets more than with its endpoints.
pub type Labels = Arc<LabelMap>;

/// A named port of an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedPort {
    /// Name.
    pub name: String,
    /// Protocol.
    pub protocol: Protocol,
    /// Number.
    pub port: u16,
}

/// A workload or host endpoint.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Workload or host.
    pub kind: EndpointKind,
    /// Namespace (workloads).
    pub namespace: Option<Name>,
    /// Name.
    pub name: Name,
    /// Service account (workloads in a namespace).
    pub service_account: Option<String>,
    /// The orchestrator that made a workload (`k8s` for pods; a WorkloadEndpoint's
    /// `spec.orchestrator`), which a special label carries.
    pub orchestrator: Option<String>,
    /// The endpoint's own labels, as written.
    pub own_labels: Labels,
    /// Every label selectors see (own, special and inherited).
    pub labels: Labels,
    /// Profiles, in order.
    pub profiles: Vec<Name>,
    /// Addresses.
    pub ips: Vec<IpAddr>,
    /// Named ports.
    pub ports: Vec<NamedPort>,
    /// The node it is on, when known (a pod's `spec.nodeName`, an endpoint's
    /// `spec.node`).
    pub node: Option<Name>,
    /// A HostEndpoint with `interfaceName: "*"`: every interface of its host. Untracked
    /// policies do not apply to it (Calico: "host endpoints with interfaceName: * do not
    /// support untracked policy"; Felix ignores them with a warning).
    pub all_interfaces: bool,
}

impl Endpoint {
    /// Whether policies of `class` can apply to this endpoint: untracked ones not to a `*`
    /// host endpoint ([`Endpoint::all_interfaces`]).
    pub fn governed_by(&self, class: PolicyClass) -> bool {
        !(class == PolicyClass::Untracked && self.all_interfaces)
    }

    /// A report reference to this endpoint.
    pub fn to_ref(&self) -> EndpointRef {
        EndpointRef {
            kind: self.kind,
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }
}

/// A NetworkSet or GlobalNetworkSet: labelled CIDRs that rule selectors can match.
#[derive(Debug, Clone)]
pub struct NetworkSet {
    /// Namespace (NetworkSet) or none (GlobalNetworkSet).
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// The set's own labels, as written.
    pub own_labels: Labels,
    /// Labels selectors see (namespaced sets inherit their namespace's `pcns.*` labels).
    pub labels: Labels,
    /// Member CIDRs.
    pub nets: Vec<IpNet>,
}

/// Labels of the `kns.<ns>` profile: every namespace label prefixed `pcns.`, plus
/// `pcns.projectcalico.org/name`.
pub fn namespace_profile_labels(namespace: &str, ns_labels: &LabelMap) -> LabelMap {
    prefixed(NAMESPACE_PREFIX, namespace, ns_labels)
}

/// Labels of the `ksa.<ns>.<sa>` profile: every service-account label prefixed `pcsa.`,
/// plus `pcsa.projectcalico.org/name`.
pub fn service_account_profile_labels(name: &str, sa_labels: &LabelMap) -> LabelMap {
    prefixed(SERVICE_ACCOUNT_PREFIX, name, sa_labels)
}

fn prefixed(prefix: &str, name: &str, labels: &LabelMap) -> LabelMap {
    let mut out: LabelMap = labels
        .iter()
        .map(|(k, v)| (format!("{prefix}{k}"), v.clone()))
        .collect();
    out.insert(format!("{prefix}{NAME_LABEL}"), name.to_string());
    out
}

/// Flattens an endpoint's labels: `own` wins over `special`, which wins over `inherited`
/// (earlier maps of `inherited` win over later ones). Own labels that claim the
/// inherited prefixes are dropped, so an endpoint cannot pretend to be elsewhere.
pub fn flatten_labels(own: &LabelMap, special: &LabelMap, inherited: &[&LabelMap]) -> LabelMap {
    let mut out = LabelMap::new();
    for map in inherited.iter().rev() {
        out.extend(map.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    out.extend(special.iter().map(|(k, v)| (k.clone(), v.clone())));
    out.extend(
        own.iter()
            .filter(|(k, _)| {
                !k.starts_with(NAMESPACE_PREFIX) && !k.starts_with(SERVICE_ACCOUNT_PREFIX)
            })
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    out
}

/// The special labels of a workload endpoint.
pub fn workload_special_labels(
    namespace: &str,
    orchestrator: Option<&str>,
    service_account: Option<&str>,
) -> LabelMap {
    let mut out = LabelMap::new();
    out.insert(NAMESPACE_LABEL.to_string(), namespace.to_string());
    if let Some(o) = orchestrator {
        out.insert(ORCHESTRATOR_LABEL.to_string(), o.to_string());
    }
    if let Some(sa) = service_account {
        out.insert(SERVICE_ACCOUNT_LABEL.to_string(), sa.to_string());
    }
    out
}

/// Name of a namespace's profile.
pub fn namespace_profile_name(namespace: &str) -> String {
    format!("kns.{namespace}")
}

/// Name of a service account's profile.
pub fn service_account_profile_name(namespace: &str, service_account: &str) -> String {
    format!("ksa.{namespace}.{service_account}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> LabelMap {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn own_labels_win_and_cannot_claim_inherited_prefixes() {
        let own = map(&[("app", "a"), ("pcns.env", "fake")]);
        let special = workload_special_labels("x", Some("k8s"), Some("web"));
        let ns = namespace_profile_labels("x", &map(&[("env", "prod"), ("app", "ns")]));
        let out = flatten_labels(&own, &special, &[&ns]);
        assert_eq!(out["app"], "a");
        assert_eq!(out["pcns.env"], "prod");
        assert_eq!(out["pcns.projectcalico.org/name"], "x");
        assert_eq!(out[NAMESPACE_LABEL], "x");
        assert_eq!(out[SERVICE_ACCOUNT_LABEL], "web");
    }
}
