//! The conformance case formats (`netpol-case/v1`, `selector-cases/v1`), as typed data.
//!
//! Unknown keys are errors, so a case the runner does not fully understand fails loudly
//! instead of passing by ignoring part of itself.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Label map.
pub type Labels = BTreeMap<String, String>;

/// Where a case came from.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// Test suite.
    #[serde(default)]
    pub suite: String,
    /// Reference inside the suite.
    #[serde(default, rename = "ref")]
    pub reference: String,
    /// Licence of the source.
    #[serde(default)]
    pub license: String,
}

/// A `netpol-case/v1` file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetpolCase {
    /// Schema marker.
    pub schema: String,
    /// Unique id.
    pub id: String,
    /// One line.
    #[serde(default)]
    pub description: String,
    /// Provenance.
    #[serde(default)]
    pub source: Source,
    /// Feature tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The cluster.
    pub model: Model,
    /// Steps, applied cumulatively.
    #[serde(default)]
    pub steps: Vec<Step>,
}

/// A served (port, protocol).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Serve {
    /// Port.
    pub port: u16,
    /// Protocol (default TCP).
    #[serde(default)]
    pub protocol: Option<String>,
}

/// A case's cluster.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Model {
    /// Pod IPv4 range.
    #[serde(default, rename = "podCIDR")]
    pub pod_cidr: Option<String>,
    /// Pod IPv6 range (dual stack when set).
    #[serde(default, rename = "podCIDRv6")]
    pub pod_cidr_v6: Option<String>,
    /// What every pod listens on.
    #[serde(default)]
    pub serve: Vec<Serve>,
    /// Namespaces.
    #[serde(default)]
    pub namespaces: Vec<NamespaceSpec>,
    /// Service accounts (`ns/name`).
    #[serde(default)]
    pub service_accounts: Vec<NamedLabels>,
    /// Pods.
    #[serde(default)]
    pub pods: Vec<PodSpec>,
    /// Non-cluster addresses.
    #[serde(default)]
    pub externals: Vec<AddressSpec>,
    /// Hosts protected by HostEndpoints.
    #[serde(default)]
    pub hosts: Vec<AddressSpec>,
    /// More objects, verbatim YAML.
    #[serde(default)]
    pub resources: Option<String>,
}

/// A namespace.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceSpec {
    /// Name.
    pub name: String,
    /// Labels.
    #[serde(default)]
    pub labels: Labels,
}

/// A name with labels (service accounts).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedLabels {
    /// `ns/name`.
    pub name: String,
    /// Labels.
    #[serde(default)]
    pub labels: Labels,
}

/// A pod.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PodSpec {
    /// `ns/pod`.
    pub name: String,
    /// Labels.
    #[serde(default)]
    pub labels: Labels,
    /// Service account (default `default`).
    #[serde(default)]
    pub service_account: Option<String>,
    /// One address.
    #[serde(default)]
    pub ip: Option<String>,
    /// Addresses, one per family.
    #[serde(default)]
    pub ips: Vec<String>,
    /// Named ports (default: one per `serve` entry).
    #[serde(default)]
    pub ports: Option<Vec<PortSpec>>,
}

/// A named container port.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    /// Name.
    pub name: String,
    /// Number.
    pub port: u16,
    /// Protocol (default TCP).
    #[serde(default)]
    pub protocol: Option<String>,
}

/// An external or host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressSpec {
    /// Name.
    pub name: String,
    /// One address.
    #[serde(default)]
    pub ip: Option<String>,
    /// Addresses.
    #[serde(default)]
    pub ips: Vec<String>,
    /// Labels (hosts).
    #[serde(default)]
    pub labels: Labels,
}

/// A port given as a number or a name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum PortRef {
    /// Number.
    Number(u16),
    /// Named port of the destination pod.
    Name(String),
}

/// A verdict in a case file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExpectedVerdict {
    /// Gets through.
    Allow,
    /// Does not.
    Deny,
}

/// What loopback cells expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Loopback {
    /// Not checked (the default).
    #[default]
    Ignore,
    /// Must get through.
    Allow,
    /// Must not.
    Deny,
}

/// One step.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Step {
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Objects to delete (before `apply`).
    #[serde(default)]
    pub delete: Vec<DeleteSpec>,
    /// Multi-document YAML to apply.
    #[serde(default)]
    pub apply: Option<String>,
    /// Label replacements.
    #[serde(default)]
    pub set_labels: Vec<SetLabels>,
    /// Pods to add.
    #[serde(default)]
    pub add_pods: Vec<PodSpec>,
    /// Pods to delete.
    #[serde(default)]
    pub delete_pods: Vec<String>,
    /// Probes of the matrix.
    #[serde(default)]
    pub probes: Vec<Probe>,
    /// Matrix expectations.
    #[serde(default)]
    pub expect: Option<Expect>,
    /// Explicit flow checks.
    #[serde(default)]
    pub flows: Vec<FlowCheck>,
}

/// An object to delete.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeleteSpec {
    /// apiVersion (picks between Kubernetes and Calico NetworkPolicy).
    #[serde(default)]
    pub api_version: Option<String>,
    /// Kind.
    pub kind: String,
    /// Namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

/// A label replacement for a pod or a namespace.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetLabels {
    /// `ns/pod`.
    #[serde(default)]
    pub pod: Option<String>,
    /// Namespace name.
    #[serde(default)]
    pub namespace: Option<String>,
    /// The new label map.
    #[serde(default)]
    pub labels: Labels,
}

/// One (port, protocol) probed between every ordered pair of pods.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    /// Port (absent for ICMP).
    #[serde(default)]
    pub port: Option<PortRef>,
    /// Protocol (default TCP).
    #[serde(default)]
    pub protocol: Option<String>,
    /// 4 (default) or 6.
    #[serde(default)]
    pub family: Option<u8>,
}

/// Matrix expectations.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Verdict of every cell not overridden.
    pub default: ExpectedVerdict,
    /// Loopback cells.
    #[serde(default)]
    pub loopback: Loopback,
    /// Overrides, later wins.
    #[serde(default)]
    pub overrides: Vec<Override>,
}

/// One override of the matrix expectation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    /// Source pattern.
    pub from: String,
    /// Destination pattern.
    pub to: String,
    /// Verdict.
    pub verdict: ExpectedVerdict,
    /// Narrow to this port.
    #[serde(default)]
    pub port: Option<PortRef>,
    /// Narrow to this protocol.
    #[serde(default)]
    pub protocol: Option<String>,
    /// Narrow to this family.
    #[serde(default)]
    pub family: Option<u8>,
}

/// An explicit flow check.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FlowCheck {
    /// Source endpoint name.
    pub from: String,
    /// Destination endpoint name.
    pub to: String,
    /// Port.
    #[serde(default)]
    pub port: Option<PortRef>,
    /// Protocol (default TCP).
    #[serde(default)]
    pub protocol: Option<String>,
    /// 4 (default) or 6.
    #[serde(default)]
    pub family: Option<u8>,
    /// Enforced verdict.
    pub verdict: ExpectedVerdict,
    /// Verdict with staged policies enforced.
    #[serde(default)]
    pub pending: Option<ExpectedVerdict>,
    /// Destination side alone.
    #[serde(default)]
    pub ingress: Option<ExpectedVerdict>,
    /// Source side alone.
    #[serde(default)]
    pub egress: Option<ExpectedVerdict>,
    /// What settled the verdict.
    #[serde(default)]
    pub decided_by: Option<DecidedBy>,
}

/// What settled a verdict.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecidedBy {
    /// Tier (absent for profiles).
    #[serde(default)]
    pub tier: Option<String>,
    /// Kind.
    pub kind: String,
    /// Namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Rule index, `end-of-tier` or `no-profile` (Bulkhead's own cases also use
    /// `failsafe` and `untracked-reply`, the engine's other rule references).
    pub rule: RuleSpec,
}

/// A rule reference in a case file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum RuleSpec {
    /// Index.
    Index(usize),
    /// `end-of-tier` or `no-profile`.
    Word(String),
}

/// A `selector-cases/v1` file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectorCases {
    /// Schema marker.
    pub schema: String,
    /// Unique id.
    pub id: String,
    /// Provenance.
    #[serde(default)]
    pub source: Source,
    /// Feature tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Match vectors.
    #[serde(default)]
    pub cases: Vec<SelectorCase>,
    /// Selectors that must not parse.
    #[serde(default)]
    pub invalid: Vec<String>,
    /// Canonical forms.
    #[serde(default)]
    pub canonical: Vec<CanonicalCase>,
}

/// One selector with label maps it must and must not match.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SelectorCase {
    /// The selector.
    pub selector: String,
    /// Must match.
    #[serde(default)]
    pub matches: Vec<Labels>,
    /// Must not match.
    #[serde(default)]
    pub non_matches: Vec<Labels>,
}

/// An input and its canonical form.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanonicalCase {
    /// Input.
    pub input: String,
    /// Canonical output.
    pub output: String,
    /// Unique ID, where pinned.
    #[serde(default)]
    pub uid: Option<String>,
}
