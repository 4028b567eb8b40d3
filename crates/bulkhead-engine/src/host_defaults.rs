//! What a node does with traffic to and from its host that no policy expresses: the
//! failsafe ports and `DefaultEndpointToHostAction`, the settings of Felix's
//! `FelixConfiguration` that Bulkhead honours.
//!
//! As in Felix, each setting comes from the first source that sets it: the agent's flags
//! ([`Cluster::override_host_defaults`](crate::Cluster::override_host_defaults)), then
//! the FelixConfiguration named `node.<nodename>`, then the one named `default`, then
//! Felix's default. The evaluator resolves them per node
//! ([`Cluster::host_defaults`](crate::Cluster::host_defaults)); the agent's calculation
//! resolves them for its node the same way, so `check` answers for the node the agent
//! enforces.

use std::collections::{BTreeMap, HashMap};

use bulkhead_api::calico::{
    FELIX_GLOBAL_CONFIGURATION, FelixConfigurationSpec, ProtoPort, felix_configuration_node,
    felix_node_configuration_name,
};
use bulkhead_api::parse_cidr;
pub use bulkhead_api::values::EndpointToHost;
use bulkhead_api::values::Protocol;

use crate::failsafe::{Failsafe, FailsafePort};

/// A node's defaults for traffic to and from its host, around the policies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostDefaults {
    /// The host endpoints' failsafe ports.
    pub failsafe: Failsafe,
    /// What a workload's traffic to its own host meets after its egress policy.
    pub endpoint_to_host: EndpointToHost,
}

/// One source of settings: each field it sets (`Some`) wins over later sources.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostDefaultsLayer {
    /// Ports a host endpoint always lets in.
    pub failsafe_inbound: Option<Vec<FailsafePort>>,
    /// Ports a host endpoint always lets out.
    pub failsafe_outbound: Option<Vec<FailsafePort>>,
    /// What a workload's traffic to its own host meets after its egress policy.
    pub endpoint_to_host: Option<EndpointToHost>,
}

impl HostDefaultsLayer {
    /// The settings a FelixConfiguration sets. A failsafe port whose `net` does not
    /// parse, which validation refuses, is left out rather than opened to every address.
    pub fn from_spec(spec: &FelixConfigurationSpec) -> HostDefaultsLayer {
        let entry = |p: &ProtoPort| {
            let net = match &p.net {
                Some(text) => Some(parse_cidr(text)?),
                None => None,
            };
            Some(FailsafePort {
                protocol: p.protocol.unwrap_or(Protocol::TCP),
                port: p.port,
                net,
            })
        };
        let ports = |list: &Option<Vec<ProtoPort>>| {
            list.as_ref().map(|ports| {
                let mut out: Vec<FailsafePort> = Vec::new();
                for e in ports.iter().filter_map(entry) {
                    if !out.contains(&e) {
                        out.push(e);
                    }
                }
                out
            })
        };
        HostDefaultsLayer {
            failsafe_inbound: ports(&spec.failsafe_inbound_host_ports),
            failsafe_outbound: ports(&spec.failsafe_outbound_host_ports),
            endpoint_to_host: spec.default_endpoint_to_host_action,
        }
    }
}

/// Every setting given.
impl From<HostDefaults> for HostDefaultsLayer {
    fn from(d: HostDefaults) -> HostDefaultsLayer {
        HostDefaultsLayer {
            failsafe_inbound: Some(d.failsafe.inbound),
            failsafe_outbound: Some(d.failsafe.outbound),
            endpoint_to_host: Some(d.endpoint_to_host),
        }
    }
}

impl HostDefaults {
    /// Each setting from the first of `layers` that sets it, else Felix's default.
    pub fn resolve<'a>(layers: impl IntoIterator<Item = &'a HostDefaultsLayer>) -> HostDefaults {
        let mut inbound = None;
        let mut outbound = None;
        let mut to_host = None;
        for layer in layers {
            inbound = inbound.or_else(|| layer.failsafe_inbound.clone());
            outbound = outbound.or_else(|| layer.failsafe_outbound.clone());
            to_host = to_host.or(layer.endpoint_to_host);
        }
        let default = Failsafe::default();
        HostDefaults {
            failsafe: Failsafe {
                inbound: inbound.unwrap_or(default.inbound),
                outbound: outbound.unwrap_or(default.outbound),
            },
            endpoint_to_host: to_host.unwrap_or_default(),
        }
    }
}

/// Where one of a node's settings comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingSource {
    /// The agent's flag (or its environment variable).
    Flag,
    /// The FelixConfiguration of this name.
    Configuration(String),
    /// Nothing sets it: Felix's default.
    FelixDefault,
}

impl std::fmt::Display for SettingSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SettingSource::Flag => f.write_str("the agent's flag"),
            SettingSource::Configuration(name) => write!(f, "FelixConfiguration {name}"),
            SettingSource::FelixDefault => f.write_str("Felix's default"),
        }
    }
}

/// Where each of a node's settings comes from ([`HostDefaultsByNode::sources`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostDefaultsSources {
    /// Of the inbound failsafe ports.
    pub failsafe_inbound: SettingSource,
    /// Of the outbound failsafe ports.
    pub failsafe_outbound: SettingSource,
    /// Of `DefaultEndpointToHostAction`.
    pub endpoint_to_host: SettingSource,
}

/// Every node's settings, from the FelixConfigurations and the agent's flags, resolved
/// once per change so that a lookup is a map access.
#[derive(Debug, Clone, Default)]
pub struct HostDefaultsByNode {
    overrides: HostDefaultsLayer,
    /// By FelixConfiguration name (`default`, `node.<nodename>`).
    configurations: BTreeMap<String, HostDefaultsLayer>,
    /// A node without a configuration of its own.
    global: HostDefaults,
    /// Nodes with a configuration of their own.
    nodes: HashMap<String, HostDefaults>,
}

impl HostDefaultsByNode {
    /// Sets (`Some`) or removes the FelixConfiguration `name`'s settings. Returns whether
    /// the configurations changed.
    pub fn set_configuration(&mut self, name: &str, layer: Option<HostDefaultsLayer>) -> bool {
        let changed = match layer {
            Some(l) => self.configurations.insert(name.to_string(), l.clone()) != Some(l),
            None => self.configurations.remove(name).is_some(),
        };
        if changed {
            self.resolve();
        }
        changed
    }

    /// Sets the layer above every FelixConfiguration (the agent's flags).
    pub fn set_overrides(&mut self, overrides: HostDefaultsLayer) {
        self.overrides = overrides;
        self.resolve();
    }

    /// The settings of `node` (a node's own configuration, then `default`); those of
    /// `default` for an endpoint on no node.
    pub fn of(&self, node: Option<&str>) -> &HostDefaults {
        node.and_then(|n| self.nodes.get(n)).unwrap_or(&self.global)
    }

    /// Where each setting of `node` comes from, in the order [`HostDefaults::resolve`]
    /// takes them (for explanations; not on any hot path).
    pub fn sources(&self, node: Option<&str>) -> HostDefaultsSources {
        let own = node.map(felix_node_configuration_name);
        let mut layers = vec![(SettingSource::Flag, &self.overrides)];
        for name in own
            .iter()
            .map(String::as_str)
            .chain([FELIX_GLOBAL_CONFIGURATION])
        {
            if let Some(layer) = self.configurations.get(name) {
                layers.push((SettingSource::Configuration(name.to_string()), layer));
            }
        }
        let first = |set: &dyn Fn(&HostDefaultsLayer) -> bool| {
            layers
                .iter()
                .find(|(_, l)| set(l))
                .map_or(SettingSource::FelixDefault, |(s, _)| s.clone())
        };
        HostDefaultsSources {
            failsafe_inbound: first(&|l| l.failsafe_inbound.is_some()),
            failsafe_outbound: first(&|l| l.failsafe_outbound.is_some()),
            endpoint_to_host: first(&|l| l.endpoint_to_host.is_some()),
        }
    }

    fn resolve(&mut self) {
        let global = self.configurations.get(FELIX_GLOBAL_CONFIGURATION);
        self.global = HostDefaults::resolve([&self.overrides].into_iter().chain(global));
        self.nodes = self
            .configurations
            .iter()
            .filter_map(|(name, layer)| Some((felix_configuration_node(name)?, layer)))
            .map(|(node, layer)| {
                let layers = [&self.overrides, layer].into_iter().chain(global);
                (node.to_string(), HostDefaults::resolve(layers))
            })
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> FelixConfigurationSpec {
        let text = format!(
            "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {{name: default}}\nspec: {yaml}\n"
        );
        let loaded = bulkhead_api::load_str("felix.yaml", &text).expect("valid");
        match &loaded[0].resource {
            bulkhead_api::Resource::FelixConfiguration(o) => o.spec.clone(),
            other => panic!("not a FelixConfiguration: {other:?}"),
        }
    }

    #[test]
    fn each_setting_comes_from_the_first_layer_that_sets_it() {
        let flags = HostDefaultsLayer {
            endpoint_to_host: Some(EndpointToHost::Accept),
            ..HostDefaultsLayer::default()
        };
        let node = HostDefaultsLayer::from_spec(&spec(
            "{defaultEndpointToHostAction: Drop, failsafeInboundHostPorts: [{port: 2222}, {protocol: UDP, port: 53}]}",
        ));
        let global = HostDefaultsLayer::from_spec(&spec(
            "{failsafeInboundHostPorts: [], failsafeOutboundHostPorts: []}",
        ));
        let d = HostDefaults::resolve([&flags, &node, &global]);
        assert_eq!(d.endpoint_to_host, EndpointToHost::Accept, "the flag wins");
        assert_eq!(
            d.failsafe.inbound,
            [
                FailsafePort::any(Protocol::TCP, 2222),
                FailsafePort::any(Protocol::UDP, 53)
            ],
            "the node's list, TCP when no protocol is given"
        );
        assert!(
            d.failsafe.outbound.is_empty(),
            "the global empty list: none"
        );
        let d = HostDefaults::resolve([&node]);
        assert_eq!(d.endpoint_to_host, EndpointToHost::Drop);
        assert_eq!(d.failsafe.outbound, Failsafe::default().outbound);
        assert_eq!(HostDefaults::resolve([]), HostDefaults::default());
    }

    #[test]
    fn each_node_takes_its_own_configuration_then_the_global_one() {
        let mut by_node = HostDefaultsByNode::default();
        let drop = HostDefaultsLayer::from_spec(&spec("{defaultEndpointToHostAction: Drop}"));
        let ssh_only =
            HostDefaultsLayer::from_spec(&spec("{failsafeInboundHostPorts: [{port: 22}]}"));
        assert!(by_node.set_configuration(FELIX_GLOBAL_CONFIGURATION, Some(drop.clone())));
        assert!(
            !by_node.set_configuration(FELIX_GLOBAL_CONFIGURATION, Some(drop)),
            "unchanged"
        );
        assert!(by_node.set_configuration("node.n1", Some(ssh_only)));
        assert!(!by_node.set_configuration("elsewhere", None));
        let n1 = by_node.of(Some("n1"));
        assert_eq!(n1.failsafe.inbound, [FailsafePort::any(Protocol::TCP, 22)]);
        assert_eq!(n1.endpoint_to_host, EndpointToHost::Drop, "from default");
        let n2 = by_node.of(Some("n2"));
        assert_eq!(n2.failsafe, Failsafe::default());
        assert_eq!(n2.endpoint_to_host, EndpointToHost::Drop);
        assert_eq!(by_node.of(None), n2);
        by_node.set_overrides(HostDefaultsLayer {
            endpoint_to_host: Some(EndpointToHost::Accept),
            ..HostDefaultsLayer::default()
        });
        assert_eq!(
            by_node.of(Some("n1")).endpoint_to_host,
            EndpointToHost::Accept
        );
        let sources = by_node.sources(Some("n1"));
        assert_eq!(sources.endpoint_to_host, SettingSource::Flag);
        assert_eq!(
            sources.failsafe_inbound,
            SettingSource::Configuration("node.n1".into())
        );
        assert_eq!(sources.failsafe_outbound, SettingSource::FelixDefault);
        assert_eq!(
            by_node.sources(Some("n2")).failsafe_inbound,
            SettingSource::FelixDefault
        );
        assert!(by_node.set_configuration(FELIX_GLOBAL_CONFIGURATION, None));
        assert_eq!(
            by_node.of(Some("n1")).failsafe.inbound,
            [FailsafePort::any(Protocol::TCP, 22)]
        );
    }

    #[test]
    fn a_failsafe_port_keeps_its_net() {
        let layer = HostDefaultsLayer::from_spec(&spec(
            "{failsafeInboundHostPorts: [{protocol: tcp, port: 22, net: 10.0.0.0/8}, {port: 22}]}",
        ));
        let ports = layer.failsafe_inbound.expect("set");
        assert_eq!(ports.len(), 2, "{ports:?}");
        assert_eq!(ports[0].to_string(), "tcp:10.0.0.0/8:22");
        assert_eq!(ports[1], FailsafePort::any(Protocol::TCP, 22));
    }

    #[test]
    fn a_full_set_of_defaults_is_a_layer_that_sets_everything() {
        let d = HostDefaults {
            endpoint_to_host: EndpointToHost::Drop,
            ..HostDefaults::default()
        };
        let layer = HostDefaultsLayer::from(d.clone());
        let other = HostDefaultsLayer::from_spec(&spec("{defaultEndpointToHostAction: Accept}"));
        assert_eq!(HostDefaults::resolve([&layer, &other]), d);
    }
}
