//! A decision in words: for each side, the path through the tiers, which policy and rule
//! decided, which tiers passed, and what staged policies would change.
//!
//! Written for the policy's author: it names every policy that applied and did not match,
//! so a rule that fails to match the way its author meant is visible.

use std::fmt::Write;

use bulkhead_api::Kind;
use bulkhead_api::values::{Action, Port};

use crate::compile::{Entity, Policy, PolicyClass, Rule};
use crate::decision::{
    Decision, Direction, EndpointKind, Hit, HitAction, Outcome, RuleRef, SideOutcome,
};
use crate::flow::Flow;
use crate::model::{Cluster, Mode, Tier};

/// Explains `decision` for `flow`; `from` and `to` name the two ends for the reader.
pub fn explain(
    cluster: &Cluster,
    flow: &Flow,
    decision: &Decision,
    from: &str,
    to: &str,
) -> String {
    let mut out = String::new();
    let port = flow
        .dst_port
        .map(|p| format!(" port {p}"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "Flow: {from} ({}) -> {to} ({}) {}{port}",
        flow.src, flow.dst, flow.protocol
    );
    if let Some(via) = via_line(&decision.enforced) {
        let _ = writeln!(out, "{via}");
    }
    let _ = writeln!(
        out,
        "Verdict: {}",
        decision.verdict().to_string().to_uppercase()
    );
    let deciding = decision.enforced.deciding_side();
    if let (Some(side), Some(hit)) = (deciding, decision.enforced.decided_by()) {
        let _ = writeln!(
            out,
            "Decided by: {} {}: {}",
            side_role(side, &decision.enforced),
            side.endpoint,
            hit_summary(hit)
        );
    }
    let _ = writeln!(out);
    let ends = Ends { flow, from, to };
    sides(&mut out, cluster, &ends, &decision.enforced, Mode::Enforced);
    let _ = writeln!(out);
    if *decision.pending() == decision.enforced {
        let _ = writeln!(
            out,
            "Staged policies: none changes this flow (pending verdict: {}).",
            decision.pending_verdict()
        );
    } else {
        let _ = writeln!(
            out,
            "Staged policies: if enforced, the verdict would be {} (now {}):",
            decision.pending_verdict().to_string().to_uppercase(),
            decision.verdict()
        );
        sides(&mut out, cluster, &ends, decision.pending(), Mode::Pending);
    }
    out
}

/// One class's tiers on one side, each with its policies that apply, in order.
type ClassTiers<'a> = (PolicyClass, Vec<(&'a Tier, Vec<&'a Policy>)>);

/// The flow and the names of its two ends.
struct Ends<'a> {
    flow: &'a Flow,
    from: &'a str,
    to: &'a str,
}

/// `Forwarded: in through host/a, out through host/b`, for a forwarded flow.
fn via_line(outcome: &Outcome) -> Option<String> {
    let through = |s: &Option<SideOutcome>, word: &str| {
        s.as_ref().map(|s| format!("{word} through {}", s.endpoint))
    };
    let parts: Vec<String> = [
        through(&outcome.forwarded_in, "in"),
        through(&outcome.forwarded_out, "out"),
    ]
    .into_iter()
    .flatten()
    .collect();
    (!parts.is_empty()).then(|| format!("Forwarded: {}", parts.join(", ")))
}

/// How `side` takes part in `outcome`, for "Decided by".
fn side_role(side: &SideOutcome, outcome: &Outcome) -> &'static str {
    let is = |s: &Option<SideOutcome>| s.as_ref().is_some_and(|s| std::ptr::eq(s, side));
    if is(&outcome.forwarded_in) {
        "forwarding in through"
    } else if is(&outcome.forwarded_out) {
        "forwarding out through"
    } else if side.direction == Direction::Egress {
        "egress of"
    } else {
        "ingress of"
    }
}

/// Every side of `outcome`, in the order a packet meets them.
fn sides(out: &mut String, cluster: &Cluster, ends: &Ends<'_>, outcome: &Outcome, mode: Mode) {
    if let Some(s) = &outcome.forwarded_in {
        forwarded_side(out, cluster, s, "Forwarded in through", mode);
    }
    let flow = ends.flow;
    for (s, ip, label, name, ingress) in [
        (&outcome.egress, flow.src, "Egress from", ends.from, false),
        (&outcome.ingress, flow.dst, "Ingress to", ends.to, true),
    ] {
        let Some(s) = s else {
            let why = if cluster.between_host_and_own_workload(flow) {
                "traffic between a host and its own workloads, not policed on this side"
            } else {
                "not a Bulkhead endpoint, no policy applies"
            };
            let _ = writeln!(out, "{label} {name}: {why} (allow).");
            continue;
        };
        // A host endpoint's untracked and pre-DNAT tiers come first (eval.rs).
        let classes: &[PolicyClass] = match (s.endpoint.kind, ingress) {
            (EndpointKind::Host, true) => &[
                PolicyClass::Untracked,
                PolicyClass::PreDnat,
                PolicyClass::Normal,
            ],
            (EndpointKind::Host, false) => &[PolicyClass::Untracked, PolicyClass::Normal],
            (EndpointKind::Workload, _) => &[PolicyClass::Normal],
        };
        let groups: Vec<_> = classes
            .iter()
            .map(|&class| (class, cluster.applicable(ip, class, ingress, mode)))
            .collect();
        side_lines(out, s, label, name, &groups);
        setting_line(out, cluster, flow, s);
    }
    if let Some(s) = &outcome.forwarded_out {
        forwarded_side(out, cluster, s, "Forwarded out through", mode);
    }
}

/// Where the node setting that decided side `s` comes from, when one did: the failsafe
/// entry that matched, or `DefaultEndpointToHostAction`, and the flag or
/// FelixConfiguration that set it.
fn setting_line(out: &mut String, cluster: &Cluster, flow: &Flow, s: &SideOutcome) {
    let Some(hit) = s
        .trace
        .iter()
        .find(|h| matches!(h.rule, RuleRef::Failsafe | RuleRef::EndpointToHost))
    else {
        return;
    };
    let node = match hit.policy.kind {
        Kind::Node => Some(&*hit.policy.name),
        _ => cluster
            .endpoint_index(EndpointKind::Host, None, &hit.policy.name)
            .and_then(|i| cluster.endpoint(i))
            .and_then(|e| e.node.as_deref()),
    };
    let settings = cluster.host_defaults(node);
    let sources = cluster.host_defaults_sources(node);
    let line = if hit.rule == RuleRef::EndpointToHost {
        format!(
            "DefaultEndpointToHostAction {}, from {}",
            settings.endpoint_to_host, sources.endpoint_to_host
        )
    } else {
        let ingress = s.direction == Direction::Ingress;
        let remote = if ingress { flow.src } else { flow.dst };
        let Some(entry) = settings
            .failsafe
            .entry(ingress, flow.protocol, flow.dst_port, remote)
        else {
            return;
        };
        let (field, source) = if ingress {
            ("failsafeInboundHostPorts", &sources.failsafe_inbound)
        } else {
            ("failsafeOutboundHostPorts", &sources.failsafe_outbound)
        };
        format!("the entry {entry} of {field}, from {source}")
    };
    let _ = writeln!(out, "  {line}");
}

/// A host endpoint's side of a forwarded flow: its untracked and pre-DNAT (coming in) and
/// `applyOnForward` tiers, and what became of the reply.
fn forwarded_side(out: &mut String, cluster: &Cluster, s: &SideOutcome, label: &str, mode: Mode) {
    let ingress = s.direction == Direction::Ingress;
    let classes: &[PolicyClass] = if ingress {
        &[
            PolicyClass::Untracked,
            PolicyClass::PreDnat,
            PolicyClass::Forward,
        ]
    } else {
        &[PolicyClass::Forward]
    };
    let index = cluster.endpoint_index(EndpointKind::Host, None, &s.endpoint.name);
    let groups: Vec<_> = classes
        .iter()
        .map(|&class| {
            let tiers = index
                .map(|i| cluster.endpoint_tiers(i, mode, class, ingress))
                .unwrap_or_default();
            let tiers = tiers.into_iter().map(|t| (t.tier, t.policies)).collect();
            (class, tiers)
        })
        .collect();
    let name = s.endpoint.to_string();
    if groups
        .iter()
        .all(|(_, tiers): &(_, Vec<_>)| tiers.is_empty())
    {
        let verdict = s.verdict.to_string().to_uppercase();
        let _ = writeln!(
            out,
            "{label} {name}: {verdict}\n  no applyOnForward policy selects it for {}; forwarded traffic is allowed.",
            if ingress { "ingress" } else { "egress" }
        );
        for h in s.trace.iter().filter(|h| h.tier.is_none()) {
            let _ = writeln!(out, "  {}", profile_hit(h, s));
        }
        return;
    }
    side_lines(out, s, label, &name, &groups);
}

/// One side: its verdict, then each class's tiers and what each did, then the profiles
/// (or the drop that ends a forwarded side).
fn side_lines(
    out: &mut String,
    s: &SideOutcome,
    label: &str,
    name: &str,
    groups: &[ClassTiers<'_>],
) {
    let who = s.endpoint.to_string();
    let aka = if who == name {
        String::new()
    } else {
        format!(" ({name})")
    };
    let verdict = s.verdict.to_string().to_uppercase();
    let _ = writeln!(out, "{label} {who}{aka}: {verdict}");
    let ingress = s.direction == Direction::Ingress;
    let none = groups.iter().all(|(_, tiers)| tiers.is_empty());
    if none && !s.trace.iter().any(|h| h.rule == RuleRef::Failsafe) {
        let dir = if ingress { "ingress" } else { "egress" };
        let _ = writeln!(
            out,
            "  no policy selects this endpoint for {dir}; its profiles decide."
        );
    }
    for (class, tiers) in groups {
        for (tier, policies) in tiers {
            tier_lines(out, s, *class, tier, policies, ingress);
        }
    }
    for h in s.trace.iter().filter(|h| h.tier.is_none()) {
        let _ = writeln!(out, "  {}", profile_hit(h, s));
    }
}

/// One tier of one class on one side: its policies and what each did. A tier that the
/// walk never entered (an earlier one decided) is left out.
fn tier_lines(
    out: &mut String,
    s: &SideOutcome,
    class: PolicyClass,
    tier: &Tier,
    policies: &[&Policy],
    ingress: bool,
) {
    // Hits of this tier's policies: a tier name can recur in another class.
    let hits: Vec<&Hit> = s
        .trace
        .iter()
        .filter(|h| h.tier.as_deref() == Some(&tier.name))
        .filter(|h| policies.iter().any(|p| p.id == h.policy))
        .collect();
    if hits.is_empty() {
        return;
    }
    let count = match policies.len() {
        1 => "1 policy applies".to_string(),
        n => format!("{n} policies apply"),
    };
    let kind = match class {
        PolicyClass::Normal => "",
        PolicyClass::Untracked => "untracked ",
        PolicyClass::PreDnat => "pre-DNAT ",
        PolicyClass::Forward => "applyOnForward ",
    };
    let _ = writeln!(out, "  {kind}tier {} ({count}):", tier.name);
    for p in policies {
        let rules = if ingress { &p.ingress } else { &p.egress };
        let policy_hits: Vec<&&Hit> = hits
            .iter()
            .filter(|h| h.policy == p.id && h.rule != RuleRef::EndOfTier)
            .collect();
        if policy_hits.is_empty() {
            let _ = writeln!(
                out,
                "    {} {}: {} rule{}, none matched",
                p.id.kind,
                policy_name(p),
                rules.len(),
                if rules.len() == 1 { "" } else { "s" }
            );
        }
        for h in policy_hits {
            let rule_text = match h.rule {
                RuleRef::Index(i) => rules.get(i).map(describe_rule).unwrap_or_default(),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "    {} {}: rule {} matched ({rule_text}) -> {}",
                p.id.kind,
                policy_name(p),
                h.rule,
                action_word(h.action)
            );
        }
    }
    if let Some(eot) = hits.iter().find(|h| h.rule == RuleRef::EndOfTier) {
        let what = if eot.action == HitAction::Pass {
            "passes to the next tier"
        } else {
            "denies"
        };
        let _ = writeln!(
            out,
            "    end of tier {}: no rule decided, the tier's default action {what}",
            tier.name
        );
    }
}

fn profile_hit(h: &Hit, s: &SideOutcome) -> String {
    match h.rule {
        RuleRef::Failsafe => format!(
            "failsafe port of host endpoint {}: allowed before any policy",
            h.policy.name
        ),
        RuleRef::UntrackedReply => format!(
            "the reply does not get through: host endpoint {} handles the connection untracked (its untracked policies) -> DENY",
            h.policy.name
        ),
        RuleRef::EndpointToHost => format!(
            "then to its own host, node {}: DefaultEndpointToHostAction is Drop -> DENY",
            h.policy.name
        ),
        RuleRef::NoProfile if h.policy.name.is_empty() => {
            "no profile rule matched (or the endpoint has no profiles) -> DENY".to_string()
        }
        RuleRef::NoProfile if h.policy.kind == Kind::HostEndpoint => {
            "every applyOnForward tier passed, and forwarded traffic has no profiles -> DENY"
                .to_string()
        }
        RuleRef::NoProfile => format!("profile {} does not exist -> DENY", h.policy.name),
        RuleRef::Index(i) => format!(
            "profile {} rule {i} -> {} ({} reached the profiles: every tier passed or none applied)",
            h.policy.name,
            action_word(h.action),
            s.endpoint
        ),
        RuleRef::EndOfTier => String::new(),
    }
}

/// One hit in a few words: `tier default, GlobalNetworkPolicy x, rule 0 (allow)`.
fn hit_summary(h: &Hit) -> String {
    let name = match &h.policy.namespace {
        Some(ns) => format!("{ns}/{}", h.policy.name),
        None => h.policy.name.to_string(),
    };
    let what = match h.rule {
        RuleRef::Failsafe => {
            return format!("failsafe port of host endpoint {name} ({})", h.action);
        }
        RuleRef::UntrackedReply => {
            return format!("reply blocked at host endpoint {name} ({})", h.action);
        }
        RuleRef::EndpointToHost => {
            return format!(
                "workload to its own host, node {name}: DefaultEndpointToHostAction ({})",
                h.action
            );
        }
        RuleRef::NoProfile if name.is_empty() => return "no profile rule matched (deny)".into(),
        RuleRef::NoProfile if h.policy.kind == Kind::HostEndpoint => {
            return "every applyOnForward tier passed (deny)".into();
        }
        RuleRef::NoProfile => return format!("profile {name} does not exist (deny)"),
        RuleRef::EndOfTier => format!("end of tier, first policy {} {name}", h.policy.kind),
        RuleRef::Index(i) => format!("{} {name}, rule {i}", h.policy.kind),
    };
    match &h.tier {
        Some(t) => format!("tier {t}, {what} ({})", h.action),
        None => format!("{what} ({})", h.action),
    }
}

fn policy_name(p: &Policy) -> String {
    match &p.id.namespace {
        Some(ns) => format!("{ns}/{}", p.id.name),
        None => p.id.name.to_string(),
    }
}

fn action_word(a: HitAction) -> &'static str {
    match a {
        HitAction::Allow => "ALLOW",
        HitAction::Deny => "DENY",
        HitAction::Pass => "PASS to the next tier",
        HitAction::Log => "LOG and continue",
    }
}

/// One rule in words, e.g. `Allow TCP to ports 53 selector (k8s-app == "kube-dns")`.
pub fn describe_rule(r: &Rule) -> String {
    let mut parts = vec![match r.action {
        Action::Allow => "Allow".to_string(),
        Action::Deny => "Deny".to_string(),
        Action::Log => "Log".to_string(),
        Action::Pass => "Pass".to_string(),
    }];
    if let Some(v) = r.ip_version {
        parts.push(format!("IPv{v}"));
    }
    if let Some(p) = r.protocol {
        parts.push(p.to_string());
    }
    if let Some(p) = r.not_protocol {
        parts.push(format!("not {p}"));
    }
    if let Some(i) = &r.icmp {
        parts.push(format!("icmp type {:?} code {:?}", i.icmp_type, i.code));
    }
    let src = describe_entity(&r.src);
    if !src.is_empty() {
        parts.push(format!("from {src}"));
    }
    let dst = describe_entity(&r.dst);
    if !dst.is_empty() {
        parts.push(format!("to {dst}"));
    }
    if src.is_empty() && dst.is_empty() {
        parts.push("any peer".into());
    }
    parts.join(" ")
}

fn describe_entity(e: &Entity) -> String {
    let list = |v: &[Port]| {
        v.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut parts = Vec::new();
    if let Some(s) = &e.selector {
        parts.push(format!("selector {}", s.canonical()));
    }
    if let Some(s) = &e.not_selector {
        parts.push(format!("not selector {}", s.canonical()));
    }
    if !e.nets.is_empty() {
        parts.push(format!(
            "nets {}",
            e.nets
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ));
    }
    if !e.not_nets.is_empty() {
        parts.push(format!(
            "not nets {}",
            e.not_nets
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ));
    }
    if !e.ports.is_empty() {
        parts.push(format!("ports {}", list(&e.ports)));
    }
    if !e.not_ports.is_empty() {
        parts.push(format!("not ports {}", list(&e.not_ports)));
    }
    parts.join(" ")
}
