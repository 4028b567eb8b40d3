//! Advisories: what a valid resource asks for that Bulkhead accepts but does not enforce
//! (yet), so that nobody relies on it without knowing. They never reject anything: the
//! server sends them as `Warning` headers on a write, and `bulkhead apply` prints them.

use std::fmt;

use crate::calico::{FELIX_GLOBAL_CONFIGURATION, Rule, felix_configuration_node};
use crate::resource::Resource;

/// One advisory: the field it is about and what is not enforced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advisory {
    /// Field path, written as validation errors write it (`spec.ingress[0].http`).
    pub path: String,
    /// What Bulkhead does not enforce, and what it does instead.
    pub message: &'static str,
}

impl fmt::Display for Advisory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// An HTTP match: the L3/L4 dataplane enforces the rule's other fields only.
pub const HTTP_MATCH: &str = "HTTP matches are not enforced (no application-layer dataplane); the rule matches on its other fields alone";

/// A Felix setting other than those the agent honours.
pub const FELIX_SETTING: &str = "not enforced: Bulkhead's agent honours failsafeInboundHostPorts, failsafeOutboundHostPorts and defaultEndpointToHostAction, and keeps the other settings as written";

/// A FelixConfiguration whose name no agent reads.
pub const FELIX_NAME: &str = "no agent reads this FelixConfiguration: `default` applies to every node, `node.<nodename>` to one";

/// The advisories for `resource`, in field order; empty for most resources.
pub fn advisories(resource: &Resource) -> Vec<Advisory> {
    let mut out = Vec::new();
    let (ingress, egress): (&[Rule], &[Rule]) = match resource {
        Resource::FelixConfiguration(o) => {
            let name = o.metadata.name.as_str();
            if name != FELIX_GLOBAL_CONFIGURATION && felix_configuration_node(name).is_none() {
                out.push(Advisory {
                    path: "metadata.name".into(),
                    message: FELIX_NAME,
                });
            }
            out.extend(o.spec.other.keys().map(|field| Advisory {
                path: format!("spec.{field}"),
                message: FELIX_SETTING,
            }));
            return out;
        }
        Resource::GlobalNetworkPolicy(o) | Resource::StagedGlobalNetworkPolicy(o) => {
            (&o.spec.ingress, &o.spec.egress)
        }
        Resource::NetworkPolicy(o) | Resource::StagedNetworkPolicy(o) => {
            (&o.spec.ingress, &o.spec.egress)
        }
        Resource::Profile(o) => (&o.spec.ingress, &o.spec.egress),
        _ => return out,
    };
    for (direction, rules) in [("ingress", ingress), ("egress", egress)] {
        for (i, rule) in rules.iter().enumerate() {
            if rule.http.is_some() {
                out.push(Advisory {
                    path: format!("spec.{direction}[{i}].http"),
                    message: HTTP_MATCH,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load_str;

    fn of(yaml: &str) -> Vec<String> {
        let loaded = load_str("test.yaml", yaml).expect("valid");
        assert_eq!(loaded.len(), 1);
        advisories(&loaded[0].resource)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn policies_for_forwarded_traffic_are_enforced_and_have_none() {
        let policy = |flags: &str| {
            of(&format!(
                "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: p}}\nspec:\n  selector: has(host)\n  {flags}\n  ingress: [{{action: Allow}}]\n"
            ))
        };
        assert!(policy("applyOnForward: true\n  doNotTrack: true").is_empty());
        assert!(policy("applyOnForward: true").is_empty());
        assert!(policy("applyOnForward: true\n  preDNAT: true").is_empty());
    }

    #[test]
    fn http_matches_are_named_by_rule() {
        let got = of(
            "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  ingress:\n  - action: Deny\n    protocol: UDP\n  - action: Allow\n    protocol: TCP\n    http: {methods: [GET]}\n",
        );
        assert_eq!(got, [format!("spec.ingress[1].http: {HTTP_MATCH}")]);
    }

    #[test]
    fn felix_settings_bulkhead_does_not_enforce_are_named() {
        let got = of(
            "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: default}\nspec:\n  bpfEnabled: true\n  defaultEndpointToHostAction: Drop\n  logSeverityScreen: Info\n",
        );
        assert_eq!(
            got,
            [
                format!("spec.bpfEnabled: {FELIX_SETTING}"),
                format!("spec.logSeverityScreen: {FELIX_SETTING}")
            ]
        );
        let got = of(
            "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: node-1}\nspec: {failsafeInboundHostPorts: []}\n",
        );
        assert_eq!(got, [format!("metadata.name: {FELIX_NAME}")]);
        assert_eq!(felix_configuration_node("node.n1"), Some("n1"));
        assert_eq!(felix_configuration_node("node."), None);
        assert_eq!(felix_configuration_node("default"), None);
    }

    #[test]
    fn ordinary_resources_have_none() {
        assert!(
            of("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: p}\nspec:\n  selector: has(host)\n  ingress: [{action: Allow}]\n")
                .is_empty()
        );
        assert!(
            of("apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: t}\nspec: {order: 10}\n")
                .is_empty()
        );
    }
}
