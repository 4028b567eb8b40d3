//! Policy and profile chains: one chain per policy (or profile) and direction, shared by
//! every endpoint that uses it.

use bulkhead_api::values::Action;
use bulkhead_engine::PolicyRef;
use bulkhead_engine::compile::{Policy, PolicyClass, Profile, Rule};

use super::{direction, regular};
use crate::dispatch::Reach;
use crate::rules::{MARK_ACCEPT, MARK_PASS, RuleRenderer, SetRequests, log_action};
use crate::table::Chain;
use crate::tag::{TagVerdict, TaggedRule, Tagging};

/// The [`Reach`] of a policy's rules for one direction.
pub fn policy_reach(policy: &Policy, ingress: bool) -> Reach {
    Reach::of(if ingress {
        &policy.ingress
    } else {
        &policy.egress
    })
}

/// `p.<kind>.<ns>/<name>.in|out`: the chain of a policy's rules for one direction, as an
/// endpoint's `class` list uses it; `p.<kind>.<ns>/<name>.fwd.in` for the ingress rules of
/// an `applyOnForward` policy as a host endpoint applies them to forwarded traffic (its
/// egress rules use the `.out` chain, which does the same either way).
pub fn policy_chain_name(id: &PolicyRef, class: PolicyClass, ingress: bool) -> String {
    match (class, ingress) {
        (PolicyClass::Forward, true) => format!("p.{}.fwd.in", chain_id(id)),
        _ => format!("p.{}.{}", chain_id(id), direction(ingress)),
    }
}

/// Every chain name [`policy_chain_name`] can give policy `id`.
pub fn policy_chain_names(id: &PolicyRef) -> [String; 3] {
    [
        policy_chain_name(id, PolicyClass::Normal, true),
        policy_chain_name(id, PolicyClass::Normal, false),
        policy_chain_name(id, PolicyClass::Forward, true),
    ]
}

/// A policy's chain for one direction, as an endpoint's `class` list uses it (the
/// policy's own class, or [`PolicyClass::Forward`]); the sets its rules refer to are added
/// to `sets`.
///
/// An ingress Allow accepts on the spot: ingress is the last check of every path (a
/// workload's ingress comes after the source's egress in the forward pass; a host's is
/// the input hook), so nothing after it could deny, and the endpoint chain saves a mark
/// test per policy. Egress chains are shared by workloads, whose allowed packets must go
/// on to the destination's ingress, and hosts: they mark and return. So do the ingress
/// chains of forwarded traffic, which the destination's ingress follows. Untracked and
/// pre-DNAT policies (host endpoints' [`early_chain`](super::early_chain)s) mark and accept.
pub fn policy_chain(
    policy: &Policy,
    class: PolicyClass,
    ingress: bool,
    tagging: Tagging,
    sets: &mut SetRequests,
) -> Chain {
    let allow = match (class, ingress) {
        (PolicyClass::Normal, true) => "accept".to_string(),
        (PolicyClass::Normal | PolicyClass::Forward, _) => {
            format!("meta mark set meta mark | {MARK_ACCEPT:#x} return")
        }
        // Before conntrack: the packet is not tracked, and the filter hooks let it
        // through by its mark.
        (PolicyClass::Untracked, _) => {
            format!("notrack meta mark set meta mark | {MARK_ACCEPT:#x} accept")
        }
        // Before the filter hooks, which let it through by its mark.
        (PolicyClass::PreDnat, _) => format!("meta mark set meta mark | {MARK_ACCEPT:#x} accept"),
    };
    let pass = format!("meta mark set meta mark | {MARK_PASS:#x} return");
    let rules = if ingress {
        &policy.ingress
    } else {
        &policy.egress
    };
    let mut out = Vec::new();
    let mut r = RuleRenderer::new(sets);
    for (i, rule) in rules.iter().enumerate() {
        let comment = format!("{} rule {i}", chain_id(&policy.id));
        let tagged = TaggedRule::Policy {
            policy: policy.id.clone(),
            index: i,
        };
        let then = RuleThen {
            allow: &allow,
            pass: &pass,
            comment: &comment,
        };
        let action = then.action(rule, &tagged, ingress, tagging);
        out.extend(r.render(rule, &action, &comment));
    }
    regular(out)
}

/// The verdicts of a policy's or profile's rules: what Allow and Pass do there, and the
/// comment a Log rule logs with.
struct RuleThen<'a> {
    allow: &'a str,
    pass: &'a str,
    comment: &'a str,
}

impl RuleThen<'_> {
    /// What `rule` does after its matches: the NFLOG tag of its verdict when tagging
    /// ([`crate::tag`]), then `allow`, `drop` or `pass`; a Log rule logs and goes on.
    fn action(&self, rule: &Rule, tagged: &TaggedRule, ingress: bool, tagging: Tagging) -> String {
        let (verdict, then) = match rule.action {
            Action::Allow => (TagVerdict::Allow, self.allow),
            Action::Deny => (TagVerdict::Deny, "drop"),
            Action::Pass => (TagVerdict::Pass, self.pass),
            Action::Log => return log_action(self.comment),
        };
        tagging.verdict(tagged, verdict, ingress, then)
    }
}

/// `r.<profile>.in|out`: the chain of a profile's rules for one direction.
pub fn profile_chain_name(profile: &str, ingress: bool) -> String {
    format!("r.{profile}.{}", direction(ingress))
}

/// A profile's chain for one direction; the sets its rules refer to are added to `sets`.
pub fn profile_chain(
    profile: &Profile,
    ingress: bool,
    tagging: Tagging,
    sets: &mut SetRequests,
) -> Chain {
    let allow = format!("meta mark set meta mark | {MARK_ACCEPT:#x} return");
    let rules = if ingress {
        &profile.ingress
    } else {
        &profile.egress
    };
    let mut out = Vec::new();
    let mut r = RuleRenderer::new(sets);
    for (i, rule) in rules.iter().enumerate() {
        let comment = format!("pro:{} rule {i}", profile.name);
        let tagged = TaggedRule::Profile {
            profile: profile.name.to_string(),
            index: i,
        };
        // Pass in a profile moves on to the next profile, as in Calico's dataplane.
        let then = RuleThen {
            allow: &allow,
            pass: "return",
            comment: &comment,
        };
        let action = then.action(rule, &tagged, ingress, tagging);
        out.extend(r.render(rule, &action, &comment));
    }
    regular(out)
}

/// `gnp.name`, `np.ns/name`, `knp.ns/name`: the policy's identity in chain names.
fn chain_id(id: &PolicyRef) -> String {
    match &id.namespace {
        Some(ns) => format!("{}.{ns}/{}", id.kind.short_name(), id.name),
        None => format!("{}.{}", id.kind.short_name(), id.name),
    }
}
