//! Kubernetes NetworkPolicy → Calico NetworkPolicy, as Calico converts it.
//!
//! The result lives in tier `default` at order 1000. Its selector always requires
//! `projectcalico.org/orchestrator == 'k8s'`, so it never selects host endpoints. Each
//! Kubernetes rule becomes one Calico rule per (peer × protocol): ingress puts the peer in
//! `source` and the ports in `destination`; egress puts both in `destination`.

use std::collections::BTreeMap;

use bulkhead_api::calico::{EntityRule, NetworkPolicySpec, Rule};
use bulkhead_api::k8s::{
    IntOrString, K8sNetworkPolicySpec, K8sPeer, K8sPolicyPort, LabelSelector, SelectorOperator,
};
use bulkhead_api::values::{Action, Port, Protocol};

/// Order of converted Kubernetes policies in tier `default`.
pub const K8S_POLICY_ORDER: f64 = 1000.0;

/// Converts a Kubernetes NetworkPolicy spec into the Calico policy that enforces it.
pub fn k8s_to_calico(spec: &K8sNetworkPolicySpec) -> NetworkPolicySpec {
    let ingress = spec
        .ingress
        .iter()
        .flat_map(|r| expand(&r.from, &r.ports, true))
        .collect();
    let egress = spec
        .egress
        .iter()
        .flat_map(|r| expand(&r.to, &r.ports, false))
        .collect();
    NetworkPolicySpec {
        tier: Some("default".into()),
        order: Some(K8S_POLICY_ORDER),
        selector: Some(label_selector(&spec.pod_selector, true)),
        types: spec.policy_types.clone(),
        ingress,
        egress,
        ..Default::default()
    }
}

/// A Kubernetes label selector as a Calico selector string. Pod selectors always carry
/// the orchestrator clause; an empty namespace selector is `all()`.
pub fn label_selector(sel: &LabelSelector, pod: bool) -> String {
    let mut parts = Vec::new();
    if pod {
        parts.push("projectcalico.org/orchestrator == 'k8s'".to_string());
    }
    for (k, v) in &sel.match_labels {
        parts.push(format!("{k} == '{v}'"));
    }
    for e in &sel.match_expressions {
        let set = || {
            e.values
                .iter()
                .map(|v| format!("'{v}'"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        parts.push(match e.operator {
            SelectorOperator::In => format!("{} in {{ {} }}", e.key, set()),
            SelectorOperator::NotIn => format!("{} not in {{ {} }}", e.key, set()),
            SelectorOperator::Exists => format!("has({})", e.key),
            SelectorOperator::DoesNotExist => format!("! has({})", e.key),
        });
    }
    if parts.is_empty() {
        "all()".into()
    } else {
        parts.join(" && ")
    }
}

fn expand(peers: &[K8sPeer], ports: &[K8sPolicyPort], ingress: bool) -> Vec<Rule> {
    let peer_entities: Vec<EntityRule> = if peers.is_empty() {
        vec![EntityRule::default()]
    } else {
        peers.iter().map(peer).collect()
    };
    let groups = port_groups(ports);
    let mut rules = Vec::new();
    for entity in &peer_entities {
        for (protocol, ports) in &groups {
            let mut rule = Rule {
                action: Action::Allow,
                ip_version: None,
                protocol: *protocol,
                not_protocol: None,
                icmp: None,
                not_icmp: None,
                source: EntityRule::default(),
                destination: EntityRule::default(),
                http: None,
                metadata: None,
            };
            if ingress {
                rule.source = entity.clone();
                rule.destination.ports = ports.clone();
            } else {
                rule.destination = entity.clone();
                rule.destination.ports = ports.clone();
            }
            rules.push(rule);
        }
    }
    rules
}

fn peer(p: &K8sPeer) -> EntityRule {
    if let Some(block) = &p.ip_block {
        return EntityRule {
            nets: vec![block.cidr.clone()],
            not_nets: block.except.clone(),
            ..Default::default()
        };
    }
    let selector = label_selector(
        p.pod_selector.as_ref().unwrap_or(&LabelSelector::default()),
        true,
    );
    EntityRule {
        selector: Some(selector),
        namespace_selector: p
            .namespace_selector
            .as_ref()
            .map(|s| label_selector(s, false)),
        ..Default::default()
    }
}

/// Groups ports by protocol (default TCP). `None` as the protocol means "no ports given":
/// any protocol, any port. A protocol entry without a port number means every port of it.
fn port_groups(ports: &[K8sPolicyPort]) -> Vec<(Option<Protocol>, Vec<Port>)> {
    if ports.is_empty() {
        return vec![(None, Vec::new())];
    }
    let mut groups: BTreeMap<Protocol, Option<Vec<Port>>> = BTreeMap::new();
    for p in ports {
        let protocol = p
            .protocol
            .as_deref()
            .and_then(Protocol::parse)
            .unwrap_or(Protocol::TCP);
        let entry = groups.entry(protocol).or_insert_with(|| Some(Vec::new()));
        let port = match (&p.port, p.end_port) {
            (None, _) => None,
            (Some(IntOrString::Int(n)), Some(end)) => Some(Port::Range { min: *n, max: end }),
            (Some(IntOrString::Int(n)), None) => Some(Port::single(*n)),
            (Some(IntOrString::String(name)), _) => Some(
                name.parse::<u16>()
                    .map(Port::single)
                    .unwrap_or_else(|_| Port::Named(name.clone())),
            ),
        };
        match (entry.as_mut(), port) {
            (Some(list), Some(port)) => list.push(port),
            // A protocol listed without a port opens all of its ports.
            (_, None) => *entry = None,
            (None, Some(_)) => {}
        }
    }
    groups
        .into_iter()
        .map(|(proto, ports)| (Some(proto), ports.unwrap_or_default()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_api::k8s::{IpBlock, K8sIngressRule, LabelSelectorRequirement};

    #[test]
    fn selectors_convert_like_calico() {
        let sel = LabelSelector {
            match_labels: [("app".to_string(), "web".to_string())].into(),
            match_expressions: vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: SelectorOperator::NotIn,
                values: vec!["a".into(), "b".into()],
            }],
        };
        assert_eq!(
            label_selector(&sel, true),
            "projectcalico.org/orchestrator == 'k8s' && app == 'web' && tier not in { 'a', 'b' }"
        );
        assert_eq!(label_selector(&LabelSelector::default(), false), "all()");
    }

    #[test]
    fn rules_expand_peers_by_protocols() {
        let spec = K8sNetworkPolicySpec {
            ingress: vec![K8sIngressRule {
                from: vec![
                    K8sPeer {
                        ip_block: Some(IpBlock {
                            cidr: "10.0.0.0/8".into(),
                            except: vec!["10.1.0.0/16".into()],
                        }),
                        ..Default::default()
                    },
                    K8sPeer {
                        namespace_selector: Some(LabelSelector::default()),
                        ..Default::default()
                    },
                ],
                ports: vec![
                    K8sPolicyPort {
                        protocol: None,
                        port: Some(IntOrString::Int(80)),
                        end_port: Some(90),
                    },
                    K8sPolicyPort {
                        protocol: Some("UDP".into()),
                        port: Some(IntOrString::String("dns".into())),
                        end_port: None,
                    },
                ],
            }],
            ..Default::default()
        };
        let out = k8s_to_calico(&spec);
        assert_eq!(out.ingress.len(), 4);
        assert_eq!(out.ingress[0].protocol, Some(Protocol::TCP));
        assert_eq!(out.ingress[0].source.nets, vec!["10.0.0.0/8".to_string()]);
        assert_eq!(
            out.ingress[0].destination.ports,
            vec![Port::Range { min: 80, max: 90 }]
        );
        assert_eq!(
            out.ingress[1].destination.ports,
            vec![Port::Named("dns".into())]
        );
        assert_eq!(
            out.ingress[3].source.namespace_selector.as_deref(),
            Some("all()")
        );
    }
}
