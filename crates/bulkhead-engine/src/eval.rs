//! `evaluate(flow)`: the tier walk, per side and per mode (reference §3.1).
//!
//! For one endpoint and direction: every applicable tier in order; in a tier, every
//! policy in order and every rule in order; Log continues, Allow and Deny end everything,
//! Pass leaves the tier. A tier in which nothing decided applies its default action (Deny
//! unless the tier says Pass). If every tier passed, or none applied, the endpoint's
//! profiles decide; nothing matching there denies. Host endpoints first let their failsafe
//! ports through, then run untracked and pre-DNAT policies (whose tiers end in Pass).

use bulkhead_api::Kind;
use bulkhead_api::values::{Action, Protocol, TierDefaultAction};

use crate::compile::{Address, PolicyClass};
use crate::decision::{
    Decision, Direction, EndpointKind, Hit, HitAction, Outcome, PolicyRef, RuleRef, SideOutcome,
    Verdict,
};
use crate::flow::Flow;
use crate::model::{Cluster, Mode, TierSlice};

/// Inbound failsafe ports of host endpoints (Felix's defaults).
pub const FAILSAFE_INBOUND: &[(Protocol, u16)] = &[
    (Protocol::TCP, 22),
    (Protocol::UDP, 68),
    (Protocol::TCP, 179),
    (Protocol::TCP, 2379),
    (Protocol::TCP, 2380),
    (Protocol::TCP, 5473),
    (Protocol::TCP, 6443),
    (Protocol::TCP, 6666),
    (Protocol::TCP, 6667),
];

/// Outbound failsafe ports of host endpoints (Felix's defaults).
pub const FAILSAFE_OUTBOUND: &[(Protocol, u16)] = &[
    (Protocol::UDP, 53),
    (Protocol::UDP, 67),
    (Protocol::TCP, 179),
    (Protocol::TCP, 2379),
    (Protocol::TCP, 2380),
    (Protocol::TCP, 5473),
    (Protocol::TCP, 6443),
    (Protocol::TCP, 6666),
    (Protocol::TCP, 6667),
];

impl Cluster {
    /// Evaluates a flow: the enforced verdict and the pending one (staged policies as if
    /// enforced), each with both sides' verdicts and traces.
    pub fn evaluate(&self, flow: &Flow) -> Decision {
        let src = self.address(flow.src, flow.src_port);
        let dst = self.address(flow.dst, flow.dst_port);
        let enforced = self.outcome(Mode::Enforced, flow, &src, &dst);
        let pending = if self.has_staged {
            self.outcome(Mode::Pending, flow, &src, &dst)
        } else {
            enforced.clone()
        };
        Decision { enforced, pending }
    }

    fn address(&self, ip: std::net::IpAddr, port: Option<u16>) -> Address<'_> {
        Address {
            ip,
            port,
            endpoints: self
                .endpoints_at(ip)
                .iter()
                .map(|&i| {
                    let e = &self.endpoints[i];
                    (
                        &e.labels as &dyn bulkhead_selector::Labels,
                        e.ports.as_slice(),
                    )
                })
                .collect(),
            sets: self
                .network_sets
                .iter()
                .filter(|s| s.nets.iter().any(|n| n.contains(&ip)))
                .map(|s| &s.labels as &dyn bulkhead_selector::Labels)
                .collect(),
        }
    }

    fn outcome(&self, mode: Mode, flow: &Flow, src: &Address<'_>, dst: &Address<'_>) -> Outcome {
        let egress = self
            .endpoint_at(flow.src)
            .map(|ep| self.side(mode, ep, Direction::Egress, flow, src, dst));
        let ingress = self
            .endpoint_at(flow.dst)
            .map(|ep| self.side(mode, ep, Direction::Ingress, flow, src, dst));
        let denied = [&egress, &ingress]
            .into_iter()
            .flatten()
            .any(|s| s.verdict == Verdict::Deny);
        Outcome {
            verdict: if denied {
                Verdict::Deny
            } else {
                Verdict::Allow
            },
            egress,
            ingress,
        }
    }

    fn side(
        &self,
        mode: Mode,
        ep: usize,
        direction: Direction,
        flow: &Flow,
        src: &Address<'_>,
        dst: &Address<'_>,
    ) -> SideOutcome {
        let endpoint = &self.endpoints[ep];
        let ingress = direction == Direction::Ingress;
        let mut side = SideOutcome {
            endpoint: endpoint.to_ref(),
            direction,
            verdict: Verdict::Deny,
            tiers: Vec::new(),
            trace: Vec::new(),
        };
        let lists = self.endpoint_policies(ep);
        if endpoint.kind == EndpointKind::Host {
            let failsafe = if ingress {
                FAILSAFE_INBOUND
            } else {
                FAILSAFE_OUTBOUND
            };
            if flow
                .dst_port
                .is_some_and(|p| failsafe.contains(&(flow.protocol, p)))
            {
                side.verdict = Verdict::Allow;
                side.trace.push(Hit {
                    tier: None,
                    policy: PolicyRef {
                        kind: Kind::HostEndpoint,
                        namespace: None,
                        name: endpoint.name.clone(),
                    },
                    action: HitAction::Allow,
                    rule: RuleRef::Failsafe,
                });
                return side;
            }
            let early: &[PolicyClass] = if ingress {
                &[PolicyClass::Untracked, PolicyClass::PreDnat]
            } else {
                &[PolicyClass::Untracked]
            };
            for &class in early {
                let tiers = lists.get(mode, class, ingress);
                if let Some(v) = self.walk_tiers(tiers, true, ingress, flow, src, dst, &mut side) {
                    side.verdict = v;
                    return side;
                }
            }
        }
        let tiers = lists.get(mode, PolicyClass::Normal, ingress);
        if let Some(v) = self.walk_tiers(tiers, false, ingress, flow, src, dst, &mut side) {
            side.verdict = v;
            return side;
        }
        side.verdict = self.profiles(endpoint, ingress, flow, src, dst, &mut side.trace);
        side
    }

    /// Walks tiers; `Some(verdict)` if a rule or an end of tier decided, `None` if every
    /// tier passed. `force_pass` makes every tier end in Pass (untracked, pre-DNAT).
    #[allow(clippy::too_many_arguments)]
    fn walk_tiers(
        &self,
        tiers: &[TierSlice],
        force_pass: bool,
        ingress: bool,
        flow: &Flow,
        src: &Address<'_>,
        dst: &Address<'_>,
        side: &mut SideOutcome,
    ) -> Option<Verdict> {
        'tiers: for slice in tiers {
            let tier = &self.tiers[slice.tier];
            side.tiers.push(tier.name.clone());
            for &pi in &slice.policies {
                let policy = &self.policies[pi];
                let rules = if ingress {
                    &policy.ingress
                } else {
                    &policy.egress
                };
                for (ri, rule) in rules.iter().enumerate() {
                    if !rule.matches(flow, src, dst) {
                        continue;
                    }
                    let hit = |action| Hit {
                        tier: Some(tier.name.clone()),
                        policy: policy.id.clone(),
                        action,
                        rule: RuleRef::Index(ri),
                    };
                    match rule.action {
                        Action::Log => side.trace.push(hit(HitAction::Log)),
                        Action::Allow => {
                            side.trace.push(hit(HitAction::Allow));
                            return Some(Verdict::Allow);
                        }
                        Action::Deny => {
                            side.trace.push(hit(HitAction::Deny));
                            return Some(Verdict::Deny);
                        }
                        Action::Pass => {
                            side.trace.push(hit(HitAction::Pass));
                            continue 'tiers;
                        }
                    }
                }
            }
            let pass = force_pass || tier.default_action == TierDefaultAction::Pass;
            let trigger = slice.policies.first().map(|&i| self.policies[i].id.clone());
            if let Some(trigger) = trigger {
                side.trace.push(Hit {
                    tier: Some(tier.name.clone()),
                    policy: trigger,
                    action: if pass {
                        HitAction::Pass
                    } else {
                        HitAction::Deny
                    },
                    rule: RuleRef::EndOfTier,
                });
            }
            if !pass {
                return Some(Verdict::Deny);
            }
        }
        None
    }

    /// Profiles in order: the first matching Allow or Deny rule decides; Pass moves on to
    /// the next profile (as the dataplane does); a missing profile denies.
    fn profiles(
        &self,
        endpoint: &crate::endpoint::Endpoint,
        ingress: bool,
        flow: &Flow,
        src: &Address<'_>,
        dst: &Address<'_>,
        trace: &mut Vec<Hit>,
    ) -> Verdict {
        let profile_ref = |name: &str| PolicyRef {
            kind: Kind::Profile,
            namespace: None,
            name: name.to_string(),
        };
        for name in &endpoint.profiles {
            let Some(profile) = self.profiles.get(name) else {
                trace.push(Hit {
                    tier: None,
                    policy: profile_ref(name),
                    action: HitAction::Deny,
                    rule: RuleRef::NoProfile,
                });
                return Verdict::Deny;
            };
            let rules = if ingress {
                &profile.ingress
            } else {
                &profile.egress
            };
            for (ri, rule) in rules.iter().enumerate() {
                if !rule.matches(flow, src, dst) {
                    continue;
                }
                let hit = |action| Hit {
                    tier: None,
                    policy: profile_ref(name),
                    action,
                    rule: RuleRef::Index(ri),
                };
                match rule.action {
                    Action::Log => trace.push(hit(HitAction::Log)),
                    Action::Allow => {
                        trace.push(hit(HitAction::Allow));
                        return Verdict::Allow;
                    }
                    Action::Deny => {
                        trace.push(hit(HitAction::Deny));
                        return Verdict::Deny;
                    }
                    Action::Pass => {
                        trace.push(hit(HitAction::Pass));
                        break;
                    }
                }
            }
        }
        trace.push(Hit {
            tier: None,
            policy: profile_ref(""),
            action: HitAction::Deny,
            rule: RuleRef::NoProfile,
        });
        Verdict::Deny
    }
}
