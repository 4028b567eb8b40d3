//! The engine's semantics on small, readable scenarios.

use std::net::IpAddr;

use bulkhead_api::load_str;
use bulkhead_api::values::Protocol;
use bulkhead_engine::{Cluster, Flow, HitAction, ModelError, RuleRef, Verdict};

const ESTATE: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {env: prod}}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: a}}
spec: {containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}
status: {podIP: 10.65.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {app: b}}
status: {podIP: 10.65.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: c, namespace: y, labels: {app: b}}
status: {podIP: 10.65.0.3}
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: h, labels: {role: host}}
spec: {node: n1, interfaceName: "*", expectedIPs: [10.66.0.1]}
"#;

fn cluster(policies: &str) -> Cluster {
    let text = format!("{ESTATE}\n---\n{policies}");
    let loaded = load_str("scenario.yaml", &text).expect("valid scenario");
    let resources: Vec<_> = loaded.into_iter().map(|l| l.resource).collect();
    Cluster::build(&resources).expect("valid model")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn tcp(src: &str, dst: &str, port: u16) -> Flow {
    Flow::tcp(ip(src), ip(dst), port)
}

#[test]
fn no_policy_means_the_namespace_profile_allows() {
    let c = cluster("");
    let d = c.evaluate(&tcp("10.65.0.2", "10.65.0.1", 80));
    assert_eq!(d.verdict(), Verdict::Allow);
    let hit = d.enforced.decided_by().expect("a deciding hit");
    assert_eq!(&*hit.policy.name, "kns.x");
    assert_eq!(
        d.enforced.trace_strings()[1],
        "1|__PROFILE__|pro:kns.x|allow|0"
    );
}

#[test]
fn host_without_profile_allows_only_failsafes() {
    let c = cluster(
        "apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata: {name: bare}\nspec: {node: n2, expectedIPs: [10.66.0.9]}\n",
    );
    let to_bare = |port| c.evaluate(&tcp("198.18.0.1", "10.66.0.9", port)).verdict();
    assert_eq!(to_bare(80), Verdict::Deny);
    assert_eq!(to_bare(22), Verdict::Allow);
    let d = c.evaluate(&tcp("198.18.0.1", "10.66.0.9", 22));
    assert_eq!(
        d.enforced.decided_by().map(|h| h.rule),
        Some(RuleRef::Failsafe)
    );
}

#[test]
fn pass_skips_to_the_next_tier_and_end_of_tier_denies() {
    let c = cluster(
        r#"
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: pass-b}
spec:
  tier: security
  selector: app == 'a'
  ingress: [{action: Pass, source: {selector: app == 'b'}}]
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: allow-http, namespace: x}
spec:
  selector: app == 'a'
  ingress: [{action: Allow, protocol: TCP, destination: {ports: [http]}}]
"#,
    );
    // b passes the security tier, then the default tier allows the named port only.
    assert_eq!(
        c.evaluate(&tcp("10.65.0.2", "10.65.0.1", 8080)).verdict(),
        Verdict::Allow
    );
    assert_eq!(
        c.evaluate(&tcp("10.65.0.2", "10.65.0.1", 80)).verdict(),
        Verdict::Deny
    );
    // The external address matches nothing in security: its end of tier denies.
    let d = c.evaluate(&tcp("198.18.0.1", "10.65.0.1", 8080));
    assert_eq!(d.verdict(), Verdict::Deny);
    let hit = d.enforced.decided_by().expect("a deciding hit");
    assert_eq!(
        (hit.tier.as_deref(), hit.rule),
        (Some("security"), RuleRef::EndOfTier)
    );
    assert_eq!(&*hit.policy.name, "pass-b");
}

#[test]
fn namespaced_rule_selectors_stay_in_their_namespace() {
    let c = cluster(
        r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: from-b, namespace: x}
spec:
  selector: app == 'a'
  ingress: [{action: Allow, source: {selector: app == 'b'}}]
"#,
    );
    assert_eq!(
        c.evaluate(&tcp("10.65.0.2", "10.65.0.1", 80)).verdict(),
        Verdict::Allow
    );
    // y/c has app=b too, but lives in another namespace.
    assert_eq!(
        c.evaluate(&tcp("10.65.0.3", "10.65.0.1", 80)).verdict(),
        Verdict::Deny
    );
}

/// A global policy denying a's ingress from app b (more rules may follow).
const DENY_B_TO_A: &str = r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: deny-b}
spec:
  selector: app == 'a'
  ingress:
  - action: Deny
    source: {selector: app == 'b'}"#;

#[test]
fn staged_policies_change_only_the_pending_verdict() {
    let c = cluster(
        &(DENY_B_TO_A.to_string()
            + r#"
  - action: Allow
---
apiVersion: projectcalico.org/v3
kind: StagedGlobalNetworkPolicy
metadata: {name: deny-b}
spec: {stagedAction: Delete}
---
apiVersion: projectcalico.org/v3
kind: StagedNetworkPolicy
metadata: {name: lock, namespace: y}
spec: {selector: all(), types: [Egress]}
"#),
    );
    let d = c.evaluate(&tcp("10.65.0.2", "10.65.0.1", 80));
    assert_eq!(
        (d.verdict(), d.pending_verdict()),
        (Verdict::Deny, Verdict::Allow)
    );
    let d = c.evaluate(&tcp("10.65.0.3", "10.65.0.1", 80));
    assert_eq!(
        (d.verdict(), d.pending_verdict()),
        (Verdict::Deny, Verdict::Deny)
    );
    let pending_egress = d.pending().egress.clone().expect("y/c is an endpoint");
    assert_eq!(pending_egress.verdict, Verdict::Deny);
    assert_eq!(pending_egress.trace[0].policy.kind.short_name(), "snp");
}

#[test]
fn without_staged_policies_pending_is_the_enforced_outcome() {
    let c = cluster(DENY_B_TO_A);
    let d = c.evaluate(&tcp("10.65.0.2", "10.65.0.1", 80));
    assert_eq!(d.pending(), &d.enforced);
    assert_eq!(d.pending_verdict(), Verdict::Deny);
    // Reports still carry both outcomes in full.
    let json = serde_json::to_value(&d).expect("serializable");
    assert_eq!(json["pending"], json["enforced"]);
    assert_eq!(
        json["enforced"]["ingress"]["trace"][0]["policy"]["name"],
        "deny-b"
    );
}

#[test]
fn log_continues_and_is_traced() {
    let c = cluster(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: log-then-allow}
spec:
  selector: app == 'a'
  ingress: [{action: Log}, {action: Allow, protocol: UDP}]
"#,
    );
    let d = c.evaluate(&Flow::with_port(
        ip("10.65.0.2"),
        ip("10.65.0.1"),
        Protocol::UDP,
        53,
    ));
    assert_eq!(d.verdict(), Verdict::Allow);
    let actions: Vec<HitAction> = d
        .enforced
        .ingress
        .expect("a side")
        .trace
        .iter()
        .map(|h| h.action)
        .collect();
    assert_eq!(actions, vec![HitAction::Log, HitAction::Allow]);
}

#[test]
fn a_policy_in_a_missing_tier_is_a_model_error() {
    let text = format!(
        "{ESTATE}\n---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: g}}\nspec: {{tier: nope}}\n"
    );
    let resources: Vec<_> = load_str("t.yaml", &text)
        .expect("valid documents")
        .into_iter()
        .map(|l| l.resource)
        .collect();
    let err = Cluster::build(&resources).expect_err("tier nope does not exist");
    assert!(
        matches!(err, ModelError::MissingTier { ref tier, .. } if tier == "nope"),
        "{err}"
    );
}

#[test]
fn an_untracked_request_needs_an_untracked_reply_except_over_udp() {
    let c = cluster(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: untracked}
spec:
  selector: role == 'host'
  doNotTrack: true
  applyOnForward: true
  types: [Ingress]
  ingress:
    - {action: Allow, protocol: TCP, destination: {ports: [80]}}
    - {action: Allow, protocol: UDP, destination: {ports: [53]}}
"#,
    );
    // The HostEndpoint has no profile: a UDP reply, a new tracked flow, is denied.
    let tcp80 = tcp("10.65.0.1", "10.66.0.1", 80);
    let d = c.evaluate(&tcp80);
    assert_eq!(d.verdict(), Verdict::Deny);
    assert_eq!(
        d.enforced.decided_by().map(|h| h.rule),
        Some(RuleRef::UntrackedReply)
    );
    let text = bulkhead_engine::explain::explain(&c, &tcp80, &d, "x/a", "host/h");
    assert!(text.contains("untracked tier default"), "{text}");
    assert!(text.contains("rule 0 matched"), "{text}");
    assert!(text.contains("reply does not get through"), "{text}");
    let udp = Flow::with_port(ip("10.65.0.1"), ip("10.66.0.1"), Protocol::UDP, 53);
    assert_eq!(c.evaluate(&udp).verdict(), Verdict::Deny);

    // An egress rule for the reply lets TCP through; a profile lets the UDP reply out.
    let c = cluster(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: untracked}
spec:
  selector: role == 'host'
  doNotTrack: true
  applyOnForward: true
  types: [Ingress, Egress]
  ingress:
    - {action: Allow, protocol: TCP, destination: {ports: [80]}}
    - {action: Allow, protocol: UDP, destination: {ports: [53]}}
  egress:
    - {action: Allow, protocol: TCP, source: {ports: [80]}}
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: g, labels: {role: host}}
spec: {node: n2, interfaceName: "*", expectedIPs: [10.66.0.2], profiles: [projectcalico-default-allow]}
"#,
    );
    let to_g = |flow: &Flow| {
        let mut f = *flow;
        f.dst = ip("10.66.0.2");
        c.evaluate(&f).verdict()
    };
    assert_eq!(to_g(&tcp80), Verdict::Allow);
    assert_eq!(to_g(&udp), Verdict::Allow);
    // Without the profile (h), the UDP reply is still denied; the TCP one is allowed.
    assert_eq!(c.evaluate(&tcp80).verdict(), Verdict::Allow);
    assert_eq!(c.evaluate(&udp).verdict(), Verdict::Deny);
}
