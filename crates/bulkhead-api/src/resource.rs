//! The resource kinds Bulkhead accepts, and their identity.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::calico::{
    FelixConfigurationSpec, GlobalNetworkPolicySpec, HostEndpointSpec, NetworkPolicySpec,
    NetworkSetSpec, NodeSpec, ProfileSpec, TierSpec, WorkloadEndpointSpec,
};
use crate::k8s::{K8sNetworkPolicySpec, PodSpec, PodStatus};
use crate::meta::ObjectMeta;
use erased::ToValue;

/// `projectcalico.org/v3`.
pub const CALICO_API: &str = "projectcalico.org/v3";
/// `networking.k8s.io/v1`.
pub const K8S_NETWORKING_API: &str = "networking.k8s.io/v1";
/// Kubernetes core `v1`.
pub const K8S_CORE_API: &str = "v1";

/// Every kind of resource Bulkhead accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Kind {
    /// `projectcalico.org/v3` Tier.
    Tier,
    /// `projectcalico.org/v3` GlobalNetworkPolicy.
    GlobalNetworkPolicy,
    /// `projectcalico.org/v3` NetworkPolicy.
    NetworkPolicy,
    /// `projectcalico.org/v3` StagedGlobalNetworkPolicy.
    StagedGlobalNetworkPolicy,
    /// `projectcalico.org/v3` StagedNetworkPolicy.
    StagedNetworkPolicy,
    /// `projectcalico.org/v3` StagedKubernetesNetworkPolicy.
    StagedKubernetesNetworkPolicy,
    /// `networking.k8s.io/v1` NetworkPolicy.
    KubernetesNetworkPolicy,
    /// `projectcalico.org/v3` GlobalNetworkSet.
    GlobalNetworkSet,
    /// `projectcalico.org/v3` NetworkSet.
    NetworkSet,
    /// `projectcalico.org/v3` HostEndpoint.
    HostEndpoint,
    /// `projectcalico.org/v3` WorkloadEndpoint.
    WorkloadEndpoint,
    /// `projectcalico.org/v3` Profile.
    Profile,
    /// `v1` Namespace.
    Namespace,
    /// `v1` Pod.
    Pod,
    /// `v1` ServiceAccount.
    ServiceAccount,
    /// `projectcalico.org/v3` FelixConfiguration.
    FelixConfiguration,
    /// `projectcalico.org/v3` Node.
    Node,
}

impl Kind {
    /// Every kind, in a stable order.
    pub const ALL: [Kind; 17] = [
        Kind::Tier,
        Kind::GlobalNetworkPolicy,
        Kind::NetworkPolicy,
        Kind::StagedGlobalNetworkPolicy,
        Kind::StagedNetworkPolicy,
        Kind::StagedKubernetesNetworkPolicy,
        Kind::KubernetesNetworkPolicy,
        Kind::GlobalNetworkSet,
        Kind::NetworkSet,
        Kind::HostEndpoint,
        Kind::WorkloadEndpoint,
        Kind::Profile,
        Kind::Namespace,
        Kind::Pod,
        Kind::ServiceAccount,
        Kind::FelixConfiguration,
        Kind::Node,
    ];

    /// The kind for a document's `apiVersion` and `kind`.
    pub fn from_api(api_version: &str, kind: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.api_version() == api_version && k.kind_name() == kind)
    }

    /// The `apiVersion` this kind is written with.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::KubernetesNetworkPolicy => K8S_NETWORKING_API,
            Kind::Namespace | Kind::Pod | Kind::ServiceAccount => K8S_CORE_API,
            _ => CALICO_API,
        }
    }

    /// The `kind` field as written in documents.
    pub fn kind_name(self) -> &'static str {
        match self {
            Kind::Tier => "Tier",
            Kind::GlobalNetworkPolicy => "GlobalNetworkPolicy",
            Kind::NetworkPolicy | Kind::KubernetesNetworkPolicy => "NetworkPolicy",
            Kind::StagedGlobalNetworkPolicy => "StagedGlobalNetworkPolicy",
            Kind::StagedNetworkPolicy => "StagedNetworkPolicy",
            Kind::StagedKubernetesNetworkPolicy => "StagedKubernetesNetworkPolicy",
            Kind::GlobalNetworkSet => "GlobalNetworkSet",
            Kind::NetworkSet => "NetworkSet",
            Kind::HostEndpoint => "HostEndpoint",
            Kind::WorkloadEndpoint => "WorkloadEndpoint",
            Kind::Profile => "Profile",
            Kind::Namespace => "Namespace",
            Kind::Pod => "Pod",
            Kind::ServiceAccount => "ServiceAccount",
            Kind::FelixConfiguration => "FelixConfiguration",
            Kind::Node => "Node",
        }
    }

    /// The lowercase plural that names the kind's collection in API paths and store keys
    /// (`globalnetworkpolicies`, `pods`, …): unique within its API group.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Tier => "tiers",
            Kind::GlobalNetworkPolicy => "globalnetworkpolicies",
            Kind::NetworkPolicy | Kind::KubernetesNetworkPolicy => "networkpolicies",
            Kind::StagedGlobalNetworkPolicy => "stagedglobalnetworkpolicies",
            Kind::StagedNetworkPolicy => "stagednetworkpolicies",
            Kind::StagedKubernetesNetworkPolicy => "stagedkubernetesnetworkpolicies",
            Kind::GlobalNetworkSet => "globalnetworksets",
            Kind::NetworkSet => "networksets",
            Kind::HostEndpoint => "hostendpoints",
            Kind::WorkloadEndpoint => "workloadendpoints",
            Kind::Profile => "profiles",
            Kind::Namespace => "namespaces",
            Kind::Pod => "pods",
            Kind::ServiceAccount => "serviceaccounts",
            Kind::FelixConfiguration => "felixconfigurations",
            Kind::Node => "nodes",
        }
    }

    /// True for kinds that live in a namespace.
    pub fn is_namespaced(self) -> bool {
        matches!(
            self,
            Kind::NetworkPolicy
                | Kind::StagedNetworkPolicy
                | Kind::StagedKubernetesNetworkPolicy
                | Kind::KubernetesNetworkPolicy
                | Kind::NetworkSet
                | Kind::WorkloadEndpoint
                | Kind::Pod
                | Kind::ServiceAccount
        )
    }

    /// True for the policy kinds (enforced and staged).
    pub fn is_policy(self) -> bool {
        matches!(
            self,
            Kind::GlobalNetworkPolicy
                | Kind::NetworkPolicy
                | Kind::StagedGlobalNetworkPolicy
                | Kind::StagedNetworkPolicy
                | Kind::StagedKubernetesNetworkPolicy
                | Kind::KubernetesNetworkPolicy
        )
    }

    /// True for the staged policy kinds.
    pub fn is_staged(self) -> bool {
        matches!(
            self,
            Kind::StagedGlobalNetworkPolicy
                | Kind::StagedNetworkPolicy
                | Kind::StagedKubernetesNetworkPolicy
        )
    }

    /// The enforced kind a staged kind previews (itself for other kinds).
    pub fn enforced(self) -> Kind {
        match self {
            Kind::StagedGlobalNetworkPolicy => Kind::GlobalNetworkPolicy,
            Kind::StagedNetworkPolicy => Kind::NetworkPolicy,
            Kind::StagedKubernetesNetworkPolicy => Kind::KubernetesNetworkPolicy,
            k => k,
        }
    }

    /// Short kind used in policy traces, as Calico's flow logs write it (`gnp`, `knp`, …).
    pub fn short_name(self) -> &'static str {
        match self {
            Kind::GlobalNetworkPolicy => "gnp",
            Kind::NetworkPolicy => "np",
            Kind::StagedGlobalNetworkPolicy => "sgnp",
            Kind::StagedNetworkPolicy => "snp",
            Kind::StagedKubernetesNetworkPolicy => "sknp",
            Kind::KubernetesNetworkPolicy => "knp",
            Kind::Profile => "pro",
            Kind::Tier => "tier",
            Kind::GlobalNetworkSet => "gns",
            Kind::NetworkSet => "ns",
            Kind::HostEndpoint => "hep",
            Kind::WorkloadEndpoint => "wep",
            Kind::Namespace => "namespace",
            Kind::Pod => "pod",
            Kind::ServiceAccount => "sa",
            Kind::FelixConfiguration => "felixconfig",
            Kind::Node => "node",
        }
    }

    /// The name the corpus and Calico's flow-log API use for this kind of policy
    /// (`KubernetesNetworkPolicy` for the Kubernetes one).
    pub fn display_name(self) -> &'static str {
        match self {
            Kind::KubernetesNetworkPolicy => "KubernetesNetworkPolicy",
            k => k.kind_name(),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.display_name())
    }
}

/// The identity of a resource: kind, namespace (namespaced kinds only) and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ResourceKey {
    /// Kind.
    pub kind: Kind,
    /// Namespace, for namespaced kinds.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

impl fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{}", self.kind, ns, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// A resource with metadata and a spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Object<S> {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: S,
}

/// A Pod: metadata, the spec fields Bulkhead reads, and its addresses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodObject {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: PodSpec,
    /// Status (addresses).
    pub status: PodStatus,
}

/// One loaded, defaulted and validated resource.
///
/// Variants differ in size (a policy spec is larger than a namespace's metadata); they
/// are kept inline because resources are few, long-lived and matched on everywhere.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum Resource {
    /// Tier.
    Tier(Object<TierSpec>),
    /// GlobalNetworkPolicy.
    GlobalNetworkPolicy(Object<GlobalNetworkPolicySpec>),
    /// Calico NetworkPolicy.
    NetworkPolicy(Object<NetworkPolicySpec>),
    /// StagedGlobalNetworkPolicy.
    StagedGlobalNetworkPolicy(Object<GlobalNetworkPolicySpec>),
    /// StagedNetworkPolicy.
    StagedNetworkPolicy(Object<NetworkPolicySpec>),
    /// StagedKubernetesNetworkPolicy.
    StagedKubernetesNetworkPolicy(Object<K8sNetworkPolicySpec>),
    /// Kubernetes NetworkPolicy.
    KubernetesNetworkPolicy(Object<K8sNetworkPolicySpec>),
    /// GlobalNetworkSet.
    GlobalNetworkSet(Object<NetworkSetSpec>),
    /// NetworkSet.
    NetworkSet(Object<NetworkSetSpec>),
    /// HostEndpoint.
    HostEndpoint(Object<HostEndpointSpec>),
    /// WorkloadEndpoint.
    WorkloadEndpoint(Object<WorkloadEndpointSpec>),
    /// Profile.
    Profile(Object<ProfileSpec>),
    /// Namespace.
    Namespace(ObjectMeta),
    /// Pod.
    Pod(PodObject),
    /// ServiceAccount.
    ServiceAccount(ObjectMeta),
    /// FelixConfiguration.
    FelixConfiguration(Object<FelixConfigurationSpec>),
    /// Node.
    Node(Object<NodeSpec>),
}

impl Resource {
    /// The kind.
    pub fn kind(&self) -> Kind {
        match self {
            Resource::Tier(_) => Kind::Tier,
            Resource::GlobalNetworkPolicy(_) => Kind::GlobalNetworkPolicy,
            Resource::NetworkPolicy(_) => Kind::NetworkPolicy,
            Resource::StagedGlobalNetworkPolicy(_) => Kind::StagedGlobalNetworkPolicy,
            Resource::StagedNetworkPolicy(_) => Kind::StagedNetworkPolicy,
            Resource::StagedKubernetesNetworkPolicy(_) => Kind::StagedKubernetesNetworkPolicy,
            Resource::KubernetesNetworkPolicy(_) => Kind::KubernetesNetworkPolicy,
            Resource::GlobalNetworkSet(_) => Kind::GlobalNetworkSet,
            Resource::NetworkSet(_) => Kind::NetworkSet,
            Resource::HostEndpoint(_) => Kind::HostEndpoint,
            Resource::WorkloadEndpoint(_) => Kind::WorkloadEndpoint,
            Resource::Profile(_) => Kind::Profile,
            Resource::Namespace(_) => Kind::Namespace,
            Resource::Pod(_) => Kind::Pod,
            Resource::ServiceAccount(_) => Kind::ServiceAccount,
            Resource::FelixConfiguration(_) => Kind::FelixConfiguration,
            Resource::Node(_) => Kind::Node,
        }
    }

    /// The metadata.
    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Resource::Tier(o) => &o.metadata,
            Resource::GlobalNetworkPolicy(o) | Resource::StagedGlobalNetworkPolicy(o) => {
                &o.metadata
            }
            Resource::NetworkPolicy(o) | Resource::StagedNetworkPolicy(o) => &o.metadata,
            Resource::StagedKubernetesNetworkPolicy(o) | Resource::KubernetesNetworkPolicy(o) => {
                &o.metadata
            }
            Resource::GlobalNetworkSet(o) | Resource::NetworkSet(o) => &o.metadata,
            Resource::HostEndpoint(o) => &o.metadata,
            Resource::WorkloadEndpoint(o) => &o.metadata,
            Resource::Profile(o) => &o.metadata,
            Resource::FelixConfiguration(o) => &o.metadata,
            Resource::Node(o) => &o.metadata,
            Resource::Namespace(m) | Resource::ServiceAccount(m) => m,
            Resource::Pod(p) => &p.metadata,
        }
    }

    /// The identity.
    pub fn key(&self) -> ResourceKey {
        let meta = self.meta();
        let kind = self.kind();
        ResourceKey {
            kind,
            namespace: if kind.is_namespaced() {
                meta.namespace.clone()
            } else {
                None
            },
            name: meta.name.clone(),
        }
    }

    /// The resource as a document (`apiVersion`, `kind`, `metadata`, `spec`…), ready to
    /// print as YAML or JSON.
    pub fn to_document(&self) -> serde_json::Value {
        let kind = self.kind();
        let mut doc = serde_json::Map::new();
        doc.insert("apiVersion".into(), kind.api_version().into());
        doc.insert("kind".into(), kind.kind_name().into());
        doc.insert("metadata".into(), self.meta().to_value());
        for (field, part) in self.body() {
            doc.insert(field.into(), part.to_value());
        }
        serde_json::Value::Object(doc)
    }

    /// Writes what the resource says, as compact JSON, without building a document:
    /// its kind, its metadata without `resourceVersion` (which the server stamps on every
    /// write) and the rest of [`Resource::to_document`]. Two resources that write the same
    /// bytes are the same apart from their revision, so a digest of this identifies a
    /// version without keeping a copy of it.
    pub fn write_content(&self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
        w.write_all(self.kind().kind_name().as_bytes())?;
        let meta = self.meta();
        if meta.resource_version.is_some() {
            let unversioned = ObjectMeta {
                resource_version: None,
                ..meta.clone()
            };
            unversioned.write_json(w)?;
        } else {
            meta.write_json(w)?;
        }
        for (field, part) in self.body() {
            w.write_all(field.as_bytes())?;
            part.write_json(w)?;
        }
        Ok(())
    }

    /// The document's fields after `metadata`, in order.
    fn body(&self) -> Vec<(&'static str, &dyn ToValue)> {
        let spec: &dyn ToValue = match self {
            Resource::Tier(o) => &o.spec,
            Resource::GlobalNetworkPolicy(o) | Resource::StagedGlobalNetworkPolicy(o) => &o.spec,
            Resource::NetworkPolicy(o) | Resource::StagedNetworkPolicy(o) => &o.spec,
            Resource::StagedKubernetesNetworkPolicy(o) | Resource::KubernetesNetworkPolicy(o) => {
                &o.spec
            }
            Resource::GlobalNetworkSet(o) | Resource::NetworkSet(o) => &o.spec,
            Resource::HostEndpoint(o) => &o.spec,
            Resource::WorkloadEndpoint(o) => &o.spec,
            Resource::Profile(o) => &o.spec,
            Resource::FelixConfiguration(o) => &o.spec,
            Resource::Node(o) => &o.spec,
            Resource::Pod(p) => return vec![("status", &p.status), ("spec", &p.spec)],
            Resource::Namespace(_) | Resource::ServiceAccount(_) => return Vec::new(),
        };
        vec![("spec", spec)]
    }
}

mod erased {
    /// Object-safe serialisation into a JSON value or a writer.
    pub trait ToValue {
        fn to_value(&self) -> serde_json::Value;
        fn write_json(&self, w: &mut dyn std::io::Write) -> std::io::Result<()>;
    }
    impl<T: serde::Serialize> ToValue for T {
        fn to_value(&self) -> serde_json::Value {
            // Serialising plain data structs into a Value cannot fail (no maps with
            // non-string keys, no custom errors); Null keeps this total anyway.
            serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
        }
        fn write_json(&self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
            serde_json::to_writer(w, self).map_err(std::io::Error::from)
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::load_str;

    fn content(yaml: &str) -> Vec<u8> {
        let r = load_str("t.yaml", yaml).expect("loads").remove(0).resource;
        let mut out = Vec::new();
        r.write_content(&mut out).expect("writes");
        out
    }

    const WEP: &str = "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {name: a, namespace: n, labels: {app: web}}\nspec: {node: n1, interfaceName: cali1, ipNetworks: [10.65.0.1/32]}\n";

    #[test]
    fn content_ignores_the_revision_alone() {
        let plain = content(WEP);
        let revised = content(&WEP.replace("namespace: n,", "namespace: n, resourceVersion: '7',"));
        assert_eq!(plain, revised);
        assert_ne!(plain, content(&WEP.replace("app: web", "app: db")));
        assert_ne!(plain, content(&WEP.replace("cali1", "cali2")));
    }

    #[test]
    fn content_of_a_pod_has_its_status() {
        let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: n}\nspec: {nodeName: n1}\nstatus: {podIP: 10.65.0.1}\n";
        assert_ne!(
            content(pod),
            content(&pod.replace("10.65.0.1", "10.65.0.2"))
        );
    }
}
