//! Every verdict rule of a rendered table carries an NFLOG tag that names, through the
//! model's [`RuleIndex`], the rule the engine would report for it.

use bulkhead_api::load_str;
use bulkhead_api::values::{Action, TierDefaultAction};
use bulkhead_dataplane::tag::{GROUP_EGRESS, GROUP_INGRESS, RuleIndex, RuleTag, TaggedRule};
use bulkhead_dataplane::{LocalEndpoint, RenderConfig, Table, Tagging, render};
use bulkhead_engine::{Cluster, EndpointKind};

const MODEL: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {nodeName: n1}
status: {podIP: 10.65.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: shop, labels: {app: db}}
spec: {nodeName: n1}
status: {podIP: 10.65.0.2}
---
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100, defaultAction: Deny}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: security.guard}
spec:
  tier: security
  selector: app == 'web'
  types: [Ingress, Egress]
  ingress:
    - {action: Log}
    - {action: Pass, source: {selector: app == 'db'}}
    - {action: Deny, protocol: UDP}
  egress:
    - {action: Allow, protocol: TCP, destination: {ports: [5432]}}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: web, namespace: shop}
spec:
  selector: app == 'web'
  ingress:
    - {action: Allow, protocol: TCP, destination: {ports: [80]}}
---
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: partial}
spec:
  ingress:
    - {action: Allow, protocol: TCP, destination: {ports: [22]}}
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: h, labels: {role: host}}
spec: {node: n1, interfaceName: eth0, expectedIPs: [10.66.0.1], profiles: [gone, partial]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: untracked}
spec:
  selector: role == 'host'
  doNotTrack: true
  applyOnForward: true
  types: [Ingress]
  ingress:
    - {action: Allow, protocol: UDP, destination: {ports: [53]}}
"#;

/// `(prefix, group)` of every `log prefix "…" group N` in `rule`.
fn logs(rule: &str) -> Vec<(String, u16)> {
    let mut out = Vec::new();
    let mut rest = rule;
    while let Some(at) = rest.find("log prefix \"") {
        let after = &rest[at + "log prefix \"".len()..];
        let Some(end) = after.find('"') else { break };
        let prefix = after[..end].to_string();
        let group = after[end..]
            .strip_prefix("\" group ")
            .and_then(|g| g.split(' ').next())
            .and_then(|g| g.parse().ok())
            .unwrap_or(0);
        out.push((prefix, group));
        rest = &after[end..];
    }
    out
}

/// The model, and every endpoint of it local.
fn model() -> (Cluster, Vec<LocalEndpoint>) {
    let loaded = load_str("model.yaml", MODEL).expect("valid model");
    let resources: Vec<_> = loaded.into_iter().map(|l| l.resource).collect();
    let cluster = Cluster::build(&resources).expect("builds");
    let local: Vec<LocalEndpoint> = cluster
        .endpoints()
        .iter()
        .map(|e| match (e.kind, &e.namespace) {
            (EndpointKind::Workload, Some(ns)) => {
                LocalEndpoint::workload(ns, &e.name, &format!("cali{}", e.name))
            }
            _ => LocalEndpoint::host(&e.name, "eth0"),
        })
        .collect();
    (cluster, local)
}

fn rendered(cluster: &Cluster, local: &[LocalEndpoint], tagging: Tagging) -> Table {
    let config = RenderConfig {
        tagging,
        ..RenderConfig::default()
    };
    render(cluster, local, &config)
}

/// `text` with every dispatch class chain name (`d.<20 characters of hash>`, named after
/// its rules, so after its tags too) replaced by `d.*`.
fn mask_classes(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("d.") {
        let starts_word = at == 0 || rest[..at].ends_with([' ', '"']);
        let hash = rest[at + 2..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_');
        if starts_word && hash.clone().count() == 20 {
            out.push_str(&rest[..at]);
            out.push_str("d.*");
            rest = &rest[at + 22..];
        } else {
            out.push_str(&rest[..at + 2]);
            rest = &rest[at + 2..];
        }
    }
    out.push_str(rest);
    out
}

/// The chains of `table` as (masked name, masked rules), sorted.
fn masked(table: &Table, untag: bool) -> Vec<(String, Vec<String>)> {
    let mut chains: Vec<(String, Vec<String>)> = table
        .chains
        .iter()
        .map(|(name, chain)| {
            let rules = chain
                .rules
                .iter()
                .filter_map(|rule| {
                    let mut rule = rule.clone();
                    if untag {
                        // Drop each tag; a rule that only logged (a Pass tier's end) goes.
                        for (prefix, group) in logs(&rule) {
                            if group != 3 {
                                let statement = format!("log prefix \"{prefix}\" group {group}");
                                let without = rule.replace(&statement, "");
                                rule = without.split_whitespace().collect::<Vec<_>>().join(" ");
                            }
                        }
                        if rule.ends_with("== 0x0") {
                            return None;
                        }
                    }
                    Some(mask_classes(&rule))
                })
                .collect();
            (mask_classes(name), rules)
        })
        .collect();
    chains.sort();
    chains
}

#[test]
fn without_tagging_the_table_is_the_tagged_one_without_its_tags() {
    let (cluster, local) = model();
    let tagged = rendered(&cluster, &local, Tagging::On);
    let plain = rendered(&cluster, &local, Tagging::Off);
    assert_eq!(tagged.sets, plain.sets);
    assert_eq!(tagged.maps, plain.maps);
    let tags = |t: &Table| -> usize {
        t.chains
            .values()
            .flat_map(|c| &c.rules)
            .flat_map(|r| logs(r))
            .filter(|(_, group)| *group != 3)
            .count()
    };
    assert_eq!(tags(&plain), 0);
    assert!(tags(&tagged) > 20, "only {} tags", tags(&tagged));
    assert!(
        plain.chains.keys().any(|k| k.starts_with("d.")),
        "no dispatch class"
    );
    assert_eq!(masked(&plain, false), masked(&tagged, true));
}

#[test]
fn every_verdict_rule_is_tagged_with_a_rule_of_the_model() {
    let (cluster, local) = model();
    let table = rendered(&cluster, &local, Tagging::On);
    let index = RuleIndex::of(&cluster);

    let mut seen = Vec::new();
    for (chain, c) in &table.chains {
        for rule in &c.rules {
            for (prefix, group) in logs(rule) {
                if group == 3 {
                    // The Log action's own message, named by the rule's comment.
                    assert!(
                        rule.contains("comment \"gnp.security.guard rule 0\""),
                        "{rule}"
                    );
                    continue;
                }
                let tag = RuleTag::parse(&prefix).unwrap_or_else(|e| panic!("{chain}: {e}"));
                let want_group = if tag.ingress {
                    GROUP_INGRESS
                } else {
                    GROUP_EGRESS
                };
                assert_eq!(group, want_group, "{chain}: {rule}");
                let tagged = index
                    .get(&tag)
                    .unwrap_or_else(|| panic!("{chain}: unknown tag {prefix} in {rule}"));
                let verdict = prefix.chars().next().unwrap_or(' ');
                let expected = match tagged {
                    TaggedRule::Policy { policy, index } => {
                        let p = cluster
                            .policies()
                            .iter()
                            .find(|p| p.id == *policy)
                            .expect("policy of the model");
                        let rules = if tag.ingress { &p.ingress } else { &p.egress };
                        action_letter(rules[*index].action)
                    }
                    TaggedRule::Profile { .. } => 'A',
                    // Untracked and pre-DNAT tiers always end in Pass.
                    TaggedRule::EndOfTier { tier } => {
                        let deny = cluster.tiers().iter().any(|t| {
                            &*t.name == tier && t.default_action == TierDefaultAction::Deny
                        });
                        let early = chain.contains(".untracked.") || chain.contains(".prednat.");
                        if deny && !early { 'D' } else { 'P' }
                    }
                    TaggedRule::MissingProfile { .. } | TaggedRule::NoProfile => 'D',
                };
                assert_eq!(verdict, expected, "{chain}: {rule} is {tagged:?}");
                seen.push(tagged.clone());
            }
        }
    }
    // Each kind of verdict is there: policy rules of both directions and all actions,
    // the end of a Deny tier, profile rules, a missing profile, no profile matched.
    let has = |f: &dyn Fn(&TaggedRule) -> bool| seen.iter().any(f);
    assert!(has(
        &|t| matches!(t, TaggedRule::EndOfTier { tier } if tier == "security")
    ));
    assert!(has(
        &|t| matches!(t, TaggedRule::MissingProfile { profile } if profile == "gone")
    ));
    assert!(has(
        &|t| matches!(t, TaggedRule::Profile { profile, .. } if profile == "partial")
    ));
    assert!(has(&|t| matches!(t, TaggedRule::NoProfile)));
    assert!(has(
        &|t| matches!(t, TaggedRule::Policy { policy, .. } if &*policy.name == "untracked")
    ));
    for (name, index) in [("security.guard", 1), ("security.guard", 2), ("web", 0)] {
        assert!(
            has(
                &|t| matches!(t, TaggedRule::Policy { policy, index: i } if &*policy.name == name && *i == index)
            ),
            "{name} rule {index}"
        );
    }
}

fn action_letter(action: Action) -> char {
    match action {
        Action::Allow => 'A',
        Action::Deny => 'D',
        Action::Pass => 'P',
        Action::Log => 'L',
    }
}
