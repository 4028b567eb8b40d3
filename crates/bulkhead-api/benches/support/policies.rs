//! The generator of the loader bench's policies, shared with the fast YAML path's
//! differential tests (`tests/yaml_fast.rs`).

use std::fmt::Write;

/// Deterministic SplitMix64.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % n as u64) as usize
    }
}

const TIERS: [&str; 5] = ["web", "api", "db", "cache", "worker"];

/// One rule, as a YAML list item indented under `ingress:`/`egress:`.
fn rule(out: &mut String, rng: &mut Rng, ingress: bool) {
    let app = rng.below(2500);
    let team = rng.below(50);
    match rng.below(6) {
        0 => {
            let selector = format!("selector: app == 'app-{app}' && version in {{'v1', 'v2'}}");
            let ports = "ports: [8080, \"http\", \"9000:9010\"]";
            if ingress {
                let _ = write!(
                    out,
                    "    - action: Allow\n      protocol: TCP\n      source:\n        {selector}\n      destination:\n        {ports}\n"
                );
            } else {
                let _ = write!(
                    out,
                    "    - action: Allow\n      protocol: TCP\n      destination:\n        {selector}\n        {ports}\n"
                );
            }
        }
        1 => {
            let _ = write!(
                out,
                "    - action: Allow\n      protocol: TCP\n      source:\n        namespaceSelector: team == 'team-{team}'\n        selector: tier in {{'web', '{}'}}\n      destination:\n        ports: [443, \"metrics\"]\n",
                TIERS[rng.below(5)]
            );
        }
        2 => {
            let _ = write!(
                out,
                "    - action: Deny\n      source:\n        nets: [192.168.{}.0/24, 172.16.0.0/12]\n        notNets: [172.16.{}.0/24]\n",
                rng.below(256),
                rng.below(256)
            );
        }
        3 => {
            let _ = write!(
                out,
                "    - action: Allow\n      protocol: UDP\n      destination:\n        namespaceSelector: kubernetes.io/metadata.name == 'kube-system'\n        selector: k8s-app == 'kube-dns'\n        ports: [53]\n"
            );
        }
        4 => {
            let _ = write!(
                out,
                "    - action: Pass\n      protocol: TCP\n      destination:\n        namespaceSelector: env in {{'prod', 'staging'}} && has(team)\n        notPorts: [22, \"6000:6100\"]\n"
            );
        }
        _ => {
            let _ = write!(
                out,
                "    - action: Log\n      protocol: TCP\n      destination:\n        nets: [10.{}.0.0/16]\n        ports: [5432]\n",
                rng.below(256)
            );
        }
    }
}

/// `count` policies, 3 in 10 GlobalNetworkPolicies and the rest NetworkPolicies, each
/// with a selector and 2 to 4 rules, as one multi-document YAML string.
pub fn policies_yaml(count: usize) -> String {
    let mut rng = Rng(0xB01C_4EAD);
    let mut out = String::new();
    for k in 0..count {
        let ns = rng.below(500);
        let app = ns * 5 + rng.below(5);
        out.push_str("---\napiVersion: projectcalico.org/v3\n");
        if k % 10 < 3 {
            let _ = write!(
                out,
                "kind: GlobalNetworkPolicy\nmetadata:\n  name: gnp-{k}\n  labels:\n    owner: team-{}\nspec:\n  tier: tier-{}\n  order: {}\n  selector: team == 'team-{}' && tier == '{}'\n  namespaceSelector: env == 'prod'\n",
                ns % 50,
                rng.below(5),
                rng.below(1000),
                ns % 50,
                TIERS[rng.below(5)]
            );
        } else {
            let _ = write!(
                out,
                "kind: NetworkPolicy\nmetadata:\n  name: np-{k}\n  namespace: ns-{ns}\nspec:\n  tier: tier-{}\n  order: {}\n  selector: app == 'app-{app}'\n",
                5 + ns % 15,
                rng.below(1000)
            );
        }
        let rules = 2 + rng.below(3);
        let ingress = 1 + rng.below(rules);
        out.push_str("  types: [Ingress, Egress]\n  ingress:\n");
        for _ in 0..ingress {
            rule(&mut out, &mut rng, true);
        }
        out.push_str("  egress:\n");
        for _ in ingress..rules {
            rule(&mut out, &mut rng, false);
        }
        if ingress == rules {
            // Egress with no rules: keep the document valid YAML (an empty list).
            out.truncate(out.len() - "  egress:\n".len());
            out.push_str("  egress: []\n");
        }
    }
    out
}
