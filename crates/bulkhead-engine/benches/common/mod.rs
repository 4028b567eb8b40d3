//! Synthetic clusters for the engine benchmarks, built programmatically (no YAML) and
//! deterministically (a fixed-seed SplitMix64), then defaulted and validated exactly as the
//! loader would do it.
//!
//! Shape (see `docs/perf.md`):
//! - namespaces: one per 20 policies (at least 4) unless the shape says how many, labelled
//!   `team` (50 teams) and `env` (prod/staging/dev);
//! - apps: 5 per namespace (so about 3.6 NetworkPolicies per app); a pod belongs to one app and carries `app`, `tier`
//!   (web/api/db/cache/worker), `env` and `team` (from its namespace) and `version`
//!   (v1/v2), one address, and the named ports `http` (8080) and `metrics` (9090);
//! - tiers: `tiers` of them (at least 2). The first quarter are platform and security tiers
//!   ending in Pass and hold the GlobalNetworkPolicies; the rest are application tiers
//!   ending in Deny, each owned by some of the teams, and hold the teams' NetworkPolicies;
//! - policies: 9 in 10 are namespaced NetworkPolicies selecting one app (sometimes one
//!   version of it, sometimes one `tier` of the namespace) with 2–4 rules referring to other
//!   apps, other teams' namespaces (`namespaceSelector`), CIDRs and ports (numeric and
//!   named), in the tier of the namespace's team; 1 in 10 are GlobalNetworkPolicies in a
//!   random platform tier, selecting by `team` (most), `team` and `tier`, `tier` within a
//!   `namespaceSelector`, or (1 in 100) every prod and staging app, with
//!   Pass/Allow/Deny/Log rules.
//!
//! So an endpoint is selected by about 20 policies per direction, in about 5 to 6 tiers.
#![allow(dead_code)] // each bench uses part of this module

use std::net::{IpAddr, Ipv4Addr};

use bulkhead_api::calico::{
    EntityRule, GlobalNetworkPolicySpec, NetworkPolicySpec, Rule, TierSpec,
};
use bulkhead_api::k8s::{Container, ContainerPort, PodSpec, PodStatus};
use bulkhead_api::validate::validate;
use bulkhead_api::values::{Action, Port, Protocol, TierDefaultAction};
use bulkhead_api::{LabelMap, Object, ObjectMeta, PodObject, Resource};

/// Sizes of a synthetic cluster.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Pods (workload endpoints).
    pub pods: usize,
    /// Policies (GNPs and NPs).
    pub policies: usize,
    /// Tiers the policies are spread over.
    pub tiers: usize,
    /// Namespaces (5 apps each); 0: one per 20 policies (at least 4), which keeps about
    /// 3.6 NetworkPolicies per app whatever the size.
    pub namespaces: usize,
}

/// Apps per namespace.
const APPS_PER_NAMESPACE: usize = 5;
/// Teams.
const TEAMS: usize = 50;
const ENVS: [&str; 3] = ["prod", "staging", "dev"];
const APP_TIERS: [&str; 5] = ["web", "api", "db", "cache", "worker"];

/// Deterministic SplitMix64.
pub struct Rng(u64);

impl Rng {
    /// A generator with a fixed seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}

impl Shape {
    /// Namespaces.
    pub fn namespaces(&self) -> usize {
        match self.namespaces {
            0 => (self.policies / 20).max(4),
            n => n,
        }
    }

    /// Apps.
    pub fn apps(&self) -> usize {
        self.namespaces() * APPS_PER_NAMESPACE
    }

    /// Platform tiers (GlobalNetworkPolicies, ending in Pass).
    fn platform_tiers(&self) -> usize {
        (self.tiers / 4).max(1)
    }

    /// The application tier of namespace `n`'s team.
    fn team_tier(&self, n: usize) -> usize {
        let platform = self.platform_tiers();
        platform + (n % TEAMS) % (self.tiers - platform)
    }

    /// Address of pod `i`.
    pub fn pod_ip(&self, i: usize) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0A00_0001 + i as u32))
    }

    /// Every resource of the cluster, defaulted and validated.
    pub fn resources(&self) -> Vec<Resource> {
        assert!(self.tiers >= 2, "needs a platform and an application tier");
        let mut rng = Rng::new(0xB01C_4EAD);
        let mut out = Vec::with_capacity(self.pods + self.policies + self.namespaces() + 32);
        for t in 0..self.tiers {
            out.push(Resource::Tier(Object {
                metadata: meta(&tier_name(t), None, LabelMap::new()),
                spec: TierSpec {
                    order: Some(100.0 * (t + 1) as f64),
                    default_action: Some(if t < self.platform_tiers() {
                        TierDefaultAction::Pass
                    } else {
                        TierDefaultAction::Deny
                    }),
                },
            }));
        }
        for n in 0..self.namespaces() {
            let labels = labels(&[("team", &team(n)), ("env", env(n))]);
            out.push(Resource::Namespace(meta(&ns_name(n), None, labels)));
        }
        for i in 0..self.pods {
            out.push(self.pod(i, &mut rng));
        }
        for k in 0..self.policies {
            out.push(if k % 10 == 9 {
                self.global_policy(k, &mut rng)
            } else {
                self.namespaced_policy(k, &mut rng)
            });
        }
        for r in &mut out {
            let errors = validate(r);
            assert!(
                errors.is_empty(),
                "generated resource is invalid: {errors:?}"
            );
        }
        out
    }

    fn pod(&self, i: usize, rng: &mut Rng) -> Resource {
        let a = i % self.apps();
        let n = a / APPS_PER_NAMESPACE;
        let version = if rng.chance(30) { "v2" } else { "v1" };
        let labels = labels(&[
            ("app", &app(a)),
            ("tier", APP_TIERS[a % APP_TIERS.len()]),
            ("env", env(n)),
            ("team", &team(n)),
            ("version", version),
        ]);
        let port = |name: &str, p: u16| ContainerPort {
            name: Some(name.into()),
            container_port: p,
            protocol: Some("TCP".into()),
            host_port: None,
            host_ip: None,
        };
        Resource::Pod(PodObject {
            metadata: meta(&format!("{}-{i}", app(a)), Some(&ns_name(n)), labels),
            spec: PodSpec {
                service_account_name: Some(app(a)),
                node_name: Some(format!("node-{}", i % 500)),
                host_network: false,
                containers: vec![Container {
                    name: "main".into(),
                    ports: vec![port("http", 8080), port("metrics", 9090)],
                }],
            },
            status: PodStatus {
                pod_ip: Some(self.pod_ip(i).to_string()),
                pod_ips: Vec::new(),
            },
        })
    }

    /// An app of namespace `n`.
    fn app_in(&self, n: usize, rng: &mut Rng) -> usize {
        n * APPS_PER_NAMESPACE + rng.below(APPS_PER_NAMESPACE)
    }

    fn namespaced_policy(&self, k: usize, rng: &mut Rng) -> Resource {
        let a = rng.below(self.apps());
        let n = a / APPS_PER_NAMESPACE;
        let selector = match rng.below(10) {
            0..6 => format!("app == '{}'", app(a)),
            6..8 => format!("app == '{}' && version == 'v2'", app(a)),
            _ => format!("tier == '{}'", APP_TIERS[rng.below(APP_TIERS.len())]),
        };
        let mut ingress = Vec::new();
        let mut egress = Vec::new();
        for _ in 0..2 + rng.below(3) {
            match rng.below(8) {
                0..3 => ingress.push(rule(
                    Action::Allow,
                    Some(Protocol::TCP),
                    EntityRule {
                        selector: Some(format!("app == '{}'", app(self.app_in(n, rng)))),
                        ..Default::default()
                    },
                    EntityRule {
                        ports: vec![Port::single(8080), Port::Named("metrics".into())],
                        ..Default::default()
                    },
                )),
                3 => ingress.push(rule(
                    Action::Allow,
                    Some(Protocol::TCP),
                    EntityRule {
                        namespace_selector: Some(format!("team == '{}'", team(rng.below(TEAMS)))),
                        selector: Some(format!(
                            "tier in {{'web', '{}'}}",
                            APP_TIERS[rng.below(APP_TIERS.len())]
                        )),
                        ..Default::default()
                    },
                    EntityRule {
                        ports: vec![Port::Named("http".into()), Port::single(443)],
                        ..Default::default()
                    },
                )),
                4 => ingress.push(rule(
                    Action::Deny,
                    None,
                    EntityRule {
                        nets: vec![format!("192.168.{}.0/24", rng.below(256))],
                        ..Default::default()
                    },
                    EntityRule::default(),
                )),
                5 => egress.push(rule(
                    Action::Allow,
                    Some(Protocol::TCP),
                    EntityRule::default(),
                    EntityRule {
                        selector: Some(format!("app == '{}'", app(self.app_in(n, rng)))),
                        ports: vec![
                            Port::single(5432),
                            Port::Range {
                                min: 6379,
                                max: 6380,
                            },
                        ],
                        ..Default::default()
                    },
                )),
                6 => egress.push(rule(
                    Action::Allow,
                    Some(Protocol::TCP),
                    EntityRule::default(),
                    EntityRule {
                        nets: vec!["0.0.0.0/0".into()],
                        not_nets: vec!["10.0.0.0/8".into(), "192.168.0.0/16".into()],
                        ports: vec![Port::single(443)],
                        ..Default::default()
                    },
                )),
                _ => ingress.push(rule(
                    Action::Log,
                    None,
                    EntityRule {
                        namespace_selector: Some(format!("env == '{}'", ENVS[rng.below(3)])),
                        ..Default::default()
                    },
                    EntityRule::default(),
                )),
            }
        }
        Resource::NetworkPolicy(Object {
            metadata: meta(&format!("np-{k}"), Some(&ns_name(n)), LabelMap::new()),
            spec: NetworkPolicySpec {
                tier: Some(tier_name(self.team_tier(n))),
                order: Some(rng.below(1000) as f64),
                selector: Some(selector),
                ingress,
                egress,
                ..Default::default()
            },
        })
    }

    fn global_policy(&self, k: usize, rng: &mut Rng) -> Resource {
        let n = rng.below(self.namespaces());
        let (selector, namespace_selector) = match rng.below(100) {
            0..30 => (
                format!(
                    "team == '{}' && tier == '{}'",
                    team(n),
                    APP_TIERS[rng.below(APP_TIERS.len())]
                ),
                None,
            ),
            30..70 => (format!("team == '{}'", team(n)), None),
            70..99 => (
                format!("tier == '{}'", APP_TIERS[rng.below(APP_TIERS.len())]),
                Some(format!("team == '{}'", team(n))),
            ),
            _ => ("has(app) && env in {'prod', 'staging'}".to_string(), None),
        };
        let mut ingress = Vec::new();
        let mut egress = Vec::new();
        for _ in 0..2 + rng.below(3) {
            match rng.below(6) {
                0 => ingress.push(rule(
                    Action::Pass,
                    None,
                    EntityRule {
                        selector: Some(format!("team == '{}'", team(rng.below(TEAMS)))),
                        ..Default::default()
                    },
                    EntityRule::default(),
                )),
                1 => ingress.push(rule(
                    Action::Deny,
                    Some(Protocol::TCP),
                    EntityRule {
                        not_nets: vec!["10.0.0.0/8".into()],
                        ..Default::default()
                    },
                    EntityRule {
                        ports: vec![Port::Range { min: 1, max: 1023 }],
                        ..Default::default()
                    },
                )),
                2 => egress.push(rule(
                    Action::Allow,
                    Some(Protocol::UDP),
                    EntityRule::default(),
                    EntityRule {
                        namespace_selector: Some(
                            "kubernetes.io/metadata.name == 'kube-system'".into(),
                        ),
                        selector: Some("k8s-app == 'kube-dns'".into()),
                        ports: vec![Port::single(53)],
                        ..Default::default()
                    },
                )),
                3 => egress.push(rule(
                    Action::Pass,
                    None,
                    EntityRule::default(),
                    EntityRule {
                        namespace_selector: Some(format!("env == '{}'", ENVS[rng.below(3)])),
                        ..Default::default()
                    },
                )),
                4 => ingress.push(rule(
                    Action::Allow,
                    Some(Protocol::TCP),
                    EntityRule {
                        selector: Some("tier == 'web'".into()),
                        namespace_selector: Some(format!("team == '{}'", team(rng.below(TEAMS)))),
                        ..Default::default()
                    },
                    EntityRule {
                        ports: vec![Port::Named("http".into())],
                        ..Default::default()
                    },
                )),
                _ => ingress.push(rule(
                    Action::Log,
                    Some(Protocol::TCP),
                    EntityRule::default(),
                    EntityRule {
                        ports: vec![Port::single(9090)],
                        ..Default::default()
                    },
                )),
            }
        }
        Resource::GlobalNetworkPolicy(Object {
            metadata: meta(&format!("gnp-{k}"), None, LabelMap::new()),
            spec: GlobalNetworkPolicySpec {
                tier: Some(tier_name(rng.below(self.platform_tiers()))),
                order: Some(rng.below(1000) as f64),
                selector: Some(selector),
                namespace_selector,
                ingress,
                egress,
                ..Default::default()
            },
        })
    }
}

fn rule(
    action: Action,
    protocol: Option<Protocol>,
    source: EntityRule,
    destination: EntityRule,
) -> Rule {
    Rule {
        action,
        ip_version: None,
        protocol,
        not_protocol: None,
        icmp: None,
        not_icmp: None,
        source,
        destination,
        http: None,
        metadata: None,
    }
}

fn meta(name: &str, namespace: Option<&str>, labels: LabelMap) -> ObjectMeta {
    ObjectMeta {
        name: name.into(),
        namespace: namespace.map(str::to_string),
        labels,
        ..Default::default()
    }
}

fn labels(pairs: &[(&str, &str)]) -> LabelMap {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn tier_name(t: usize) -> String {
    format!("tier-{t:02}")
}

fn ns_name(n: usize) -> String {
    format!("ns-{n}")
}

fn app(a: usize) -> String {
    format!("app-{a}")
}

fn team(n: usize) -> String {
    format!("team-{}", n % TEAMS)
}

fn env(n: usize) -> &'static str {
    ENVS[n % ENVS.len()]
}
