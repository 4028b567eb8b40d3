//! `projectcalico.org/v3` resource specs, field for field as Calico defines them.
//!
//! Every struct denies unknown fields: a typo in a policy is an error with its field path,
//! never a silently ignored match criterion. The one exception is
//! [`FelixConfigurationSpec`], which keeps Felix's settings that Bulkhead does not
//! enforce (an advisory names each).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::meta::LabelMap;
use crate::values::{
    Action, EndpointToHost, PolicyType, Port, Protocol, StagedAction, TierDefaultAction,
};

/// One policy rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// What to do when the rule matches.
    pub action: Action,
    /// Restrict the rule to IPv4 (4) or IPv6 (6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_version: Option<u8>,
    /// Match this protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// Match any protocol but this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_protocol: Option<Protocol>,
    /// Match this ICMP type/code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp: Option<IcmpFields>,
    /// Match anything but this ICMP type/code.
    #[serde(default, rename = "notICMP", skip_serializing_if = "Option::is_none")]
    pub not_icmp: Option<IcmpFields>,
    /// Source match criteria.
    #[serde(default, skip_serializing_if = "EntityRule::is_empty")]
    pub source: EntityRule,
    /// Destination match criteria.
    #[serde(default, skip_serializing_if = "EntityRule::is_empty")]
    pub destination: EntityRule,
    /// HTTP match (application layer; not enforced by the L3/L4 dataplane).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpMatch>,
    /// Rule metadata (annotations become rule comments).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<RuleMetadata>,
}

/// Rule metadata.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleMetadata {
    /// Free-form annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// ICMP type and code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IcmpFields {
    /// ICMP type (0–254).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    /// ICMP code (0–255); needs `type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u8>,
}

/// HTTP match criteria.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpMatch {
    /// HTTP methods.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Path matches.
    #[serde(default)]
    pub paths: Vec<HttpPath>,
}

/// One HTTP path match: exactly one of `exact` or `prefix`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpPath {
    /// Exact path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// Path prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// Source or destination criteria of a rule. All criteria are ANDed; list elements ORed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntityRule {
    /// Match addresses in any of these CIDRs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nets: Vec<String>,
    /// Match addresses in none of these CIDRs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_nets: Vec<String>,
    /// Match endpoints and network sets whose labels match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Match anything except endpoints and network sets whose labels match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_selector: Option<String>,
    /// Match endpoints in namespaces whose labels match (`global()`: non-namespaced only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<String>,
    /// Match these ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,
    /// Match any port but these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<Port>,
    /// Match endpoints running as these service accounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_accounts: Option<ServiceAccountMatch>,
    /// Match a Kubernetes Service (not modelled; rejected by validation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<ServiceMatch>,
}

impl EntityRule {
    /// True when no criterion is set.
    pub fn is_empty(&self) -> bool {
        *self == EntityRule::default()
    }
}

/// Service-account criteria (names and selector are ANDed).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceAccountMatch {
    /// Service-account names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Selector over service-account labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
}

/// Kubernetes Service criteria.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceMatch {
    /// Service name.
    #[serde(default)]
    pub name: String,
    /// Service namespace.
    #[serde(default)]
    pub namespace: String,
}

/// Spec of a `NetworkPolicy` (namespaced) or `StagedNetworkPolicy`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicySpec {
    /// Tier (default `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// Order within the tier; none = after every ordered policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<f64>,
    /// Endpoints the policy applies to (empty = all in the namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Directions governed; inferred from the rules when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<PolicyType>,
    /// Ingress rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<Rule>,
    /// Egress rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<Rule>,
    /// Selector over the service accounts of the endpoints the policy applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_selector: Option<String>,
    /// Performance hints (`AssumeNeededOnEveryNode`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub performance_hints: Vec<String>,
    /// Staged policies only: what the staged policy previews.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged_action: Option<StagedAction>,
}

/// Spec of a `GlobalNetworkPolicy` or `StagedGlobalNetworkPolicy`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GlobalNetworkPolicySpec {
    /// Tier (default `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// Order within the tier; none = after every ordered policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<f64>,
    /// Endpoints the policy applies to (empty = all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Restrict to endpoints in namespaces whose labels match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<String>,
    /// Selector over the service accounts of the endpoints the policy applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_selector: Option<String>,
    /// Directions governed; inferred from the rules when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<PolicyType>,
    /// Ingress rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<Rule>,
    /// Egress rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<Rule>,
    /// Untracked policy (host endpoints only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub do_not_track: bool,
    /// Pre-DNAT policy (host endpoints, ingress only).
    #[serde(
        rename = "preDNAT",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub pre_dnat: bool,
    /// Also apply to traffic forwarded through host endpoints.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub apply_on_forward: bool,
    /// Performance hints (`AssumeNeededOnEveryNode`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub performance_hints: Vec<String>,
    /// Staged policies only: what the staged policy previews.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged_action: Option<StagedAction>,
}

/// Spec of a `Tier`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TierSpec {
    /// Tier order; none = after every ordered tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<f64>,
    /// What happens when a selecting policy in the tier decides nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_action: Option<TierDefaultAction>,
}

/// Spec of a `NetworkSet` or `GlobalNetworkSet`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkSetSpec {
    /// Member CIDRs (a bare address is a host prefix).
    #[serde(default)]
    pub nets: Vec<String>,
}

/// A named port of an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointPort {
    /// Port name.
    pub name: String,
    /// Protocol (TCP, UDP or SCTP).
    pub protocol: Protocol,
    /// Port number.
    pub port: u16,
    /// Host port (workload endpoints; kept, not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u16>,
    /// Host IP (workload endpoints; kept, not used).
    #[serde(default, rename = "hostIP", skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
}

/// Spec of a `HostEndpoint`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostEndpointSpec {
    /// The node the interface belongs to.
    #[serde(default)]
    pub node: String,
    /// Interface name, `*` for all of the host's interfaces, or empty.
    #[serde(default)]
    pub interface_name: String,
    /// Addresses that selectors see for this endpoint.
    #[serde(default, rename = "expectedIPs")]
    pub expected_ips: Vec<String>,
    /// Profiles applied after every tier passed.
    #[serde(default)]
    pub profiles: Vec<String>,
    /// Named ports.
    #[serde(default)]
    pub ports: Vec<EndpointPort>,
}

/// Spec of a `WorkloadEndpoint`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadEndpointSpec {
    /// Orchestrator (`k8s` for pods).
    #[serde(default)]
    pub orchestrator: String,
    /// Workload name.
    #[serde(default)]
    pub workload: String,
    /// Node the workload runs on.
    #[serde(default)]
    pub node: String,
    /// Container ID.
    #[serde(default, rename = "containerID")]
    pub container_id: String,
    /// Pod name.
    #[serde(default)]
    pub pod: String,
    /// Endpoint name.
    #[serde(default)]
    pub endpoint: String,
    /// Service account the workload runs as.
    #[serde(default)]
    pub service_account_name: String,
    /// Addresses (/32 or /128).
    #[serde(default)]
    pub ip_networks: Vec<String>,
    /// NAT mappings (kept, not used).
    #[serde(default, rename = "ipNATs", skip_serializing_if = "Option::is_none")]
    pub ip_nats: Option<serde_json::Value>,
    /// IPv4 gateway (kept, not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_gateway: Option<String>,
    /// IPv6 gateway (kept, not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_gateway: Option<String>,
    /// Profiles applied after every tier passed.
    #[serde(default)]
    pub profiles: Vec<String>,
    /// Host-side interface name.
    #[serde(default)]
    pub interface_name: String,
    /// MAC address.
    #[serde(default)]
    pub mac: String,
    /// Named ports.
    #[serde(default)]
    pub ports: Vec<EndpointPort>,
    /// Source prefixes the workload may spoof (kept, not used).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_spoofed_source_prefixes: Vec<String>,
    /// QoS controls (kept, not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos_controls: Option<serde_json::Value>,
}

/// Spec of a `Profile`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProfileSpec {
    /// Ingress rules.
    #[serde(default)]
    pub ingress: Vec<Rule>,
    /// Egress rules.
    #[serde(default)]
    pub egress: Vec<Rule>,
    /// Labels every endpoint with this profile inherits (its own labels win).
    #[serde(default)]
    pub labels_to_apply: LabelMap,
}

/// The name of the FelixConfiguration that applies to every node.
pub const FELIX_GLOBAL_CONFIGURATION: &str = "default";

/// The node a FelixConfiguration applies to by its name, `node.<nodename>`; `None` for
/// `default` (every node) and for names no agent reads.
pub fn felix_configuration_node(name: &str) -> Option<&str> {
    name.strip_prefix("node.").filter(|n| !n.is_empty())
}

/// The name of the FelixConfiguration that applies to `node` alone.
pub fn felix_node_configuration_name(node: &str) -> String {
    format!("node.{node}")
}

/// Spec of a `FelixConfiguration`: the settings of the agents, for every node (named
/// `default`) or for one (`node.<nodename>`, which takes precedence field by field).
/// Bulkhead's agent honours the failsafe ports and `defaultEndpointToHostAction`.
/// Felix's other settings (about 150, many about dataplanes Bulkhead does not have) are
/// kept as written rather than refused, so that a cluster's existing configuration
/// applies unchanged; an advisory names each one as not enforced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FelixConfigurationSpec {
    /// Ports a host endpoint always lets in, before any policy (unset: Felix's defaults;
    /// empty: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failsafe_inbound_host_ports: Option<Vec<ProtoPort>>,
    /// Ports a host endpoint always lets out, before any policy (unset: Felix's
    /// defaults; empty: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failsafe_outbound_host_ports: Option<Vec<ProtoPort>>,
    /// What a workload's traffic to its own host meets after the workload's egress
    /// policy allowed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_endpoint_to_host_action: Option<EndpointToHost>,
    /// Felix's other settings, as written.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// A failsafe port: a protocol (TCP when absent), a port, and the net it is open to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProtoPort {
    /// TCP, UDP or SCTP; TCP when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// The port.
    pub port: u16,
    /// The remote net the port is open to: the source of inbound connections, the
    /// destination of outbound ones (every address when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<String>,
}

/// Spec of a `Node`: the addresses of one node, as Calico's `calico-node` writes them
/// (and `calicoctl get nodes -o yaml` prints them). Every address here is the node's own;
/// Bulkhead reads them to know a node's traffic and its workloads' traffic to it where no
/// host endpoint names the address. The other fields (AS number, tunnel MACs,
/// orchestrator references) are accepted and kept as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSpec {
    /// BGP settings, with the node's main addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<NodeBgpSpec>,
    /// The node's addresses, each with its type (`InternalIP`, `ExternalIP`,
    /// `CalicoNodeIP`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<NodeAddress>,
    /// The address of the node's IPv4 VXLAN tunnel device.
    #[serde(
        default,
        rename = "ipv4VXLANTunnelAddr",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_vxlan_tunnel_addr: Option<String>,
    /// The MAC of the IPv4 VXLAN tunnel device (kept, not used).
    #[serde(
        default,
        rename = "vxlanTunnelMACAddr",
        skip_serializing_if = "Option::is_none"
    )]
    pub vxlan_tunnel_mac_addr: Option<String>,
    /// The address of the node's IPv6 VXLAN tunnel device.
    #[serde(
        default,
        rename = "ipv6VXLANTunnelAddr",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv6_vxlan_tunnel_addr: Option<String>,
    /// The MAC of the IPv6 VXLAN tunnel device (kept, not used).
    #[serde(
        default,
        rename = "vxlanTunnelMACAddrV6",
        skip_serializing_if = "Option::is_none"
    )]
    pub vxlan_tunnel_mac_addr_v6: Option<String>,
    /// The node's WireGuard interface addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard: Option<NodeWireguardSpec>,
    /// The orchestrators' names for this node (kept, not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orch_refs: Option<serde_json::Value>,
}

/// The BGP part of a [`NodeSpec`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeBgpSpec {
    /// The node's AS number (kept, not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<serde_json::Value>,
    /// The node's IPv4 address with its subnet, e.g. `10.66.0.1/24`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<String>,
    /// The node's IPv6 address with its subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_address: Option<String>,
    /// The address of the node's IP-in-IP tunnel device.
    #[serde(
        default,
        rename = "ipv4IPIPTunnelAddr",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_ipip_tunnel_addr: Option<String>,
    /// The route reflector cluster ID (kept, not used).
    #[serde(
        default,
        rename = "routeReflectorClusterID",
        skip_serializing_if = "Option::is_none"
    )]
    pub route_reflector_cluster_id: Option<String>,
}

/// One address of a [`NodeSpec`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeAddress {
    /// The address, bare or with its subnet (`10.66.0.1`, `10.66.0.1/24`).
    pub address: String,
    /// What kind of address it is (kept, not used).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// The WireGuard part of a [`NodeSpec`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeWireguardSpec {
    /// The IPv4 address of the node's WireGuard interface.
    #[serde(
        default,
        rename = "interfaceIPv4Address",
        skip_serializing_if = "Option::is_none"
    )]
    pub interface_ipv4_address: Option<String>,
    /// The IPv6 address of the node's WireGuard interface.
    #[serde(
        default,
        rename = "interfaceIPv6Address",
        skip_serializing_if = "Option::is_none"
    )]
    pub interface_ipv6_address: Option<String>,
}

impl NodeSpec {
    /// Every address of the node as written, each with its field path (`spec.addresses[0].address`,
    /// `spec.bgp.ipv4Address`, …): bare, or with the subnet it sits in.
    pub fn addresses(&self) -> Vec<(String, &str)> {
        let bgp = self.bgp.as_ref();
        let wg = self.wireguard.as_ref();
        let fields = [
            ("bgp.ipv4Address", bgp.and_then(|b| b.ipv4_address.as_ref())),
            ("bgp.ipv6Address", bgp.and_then(|b| b.ipv6_address.as_ref())),
            (
                "bgp.ipv4IPIPTunnelAddr",
                bgp.and_then(|b| b.ipv4_ipip_tunnel_addr.as_ref()),
            ),
            ("ipv4VXLANTunnelAddr", self.ipv4_vxlan_tunnel_addr.as_ref()),
            ("ipv6VXLANTunnelAddr", self.ipv6_vxlan_tunnel_addr.as_ref()),
            (
                "wireguard.interfaceIPv4Address",
                wg.and_then(|w| w.interface_ipv4_address.as_ref()),
            ),
            (
                "wireguard.interfaceIPv6Address",
                wg.and_then(|w| w.interface_ipv6_address.as_ref()),
            ),
        ];
        let listed = self
            .addresses
            .iter()
            .enumerate()
            .map(|(i, a)| (format!("spec.addresses[{i}].address"), a.address.as_str()));
        let named = fields
            .into_iter()
            .filter_map(|(path, v)| Some((format!("spec.{path}"), v?.as_str())));
        listed.chain(named).collect()
    }
}
