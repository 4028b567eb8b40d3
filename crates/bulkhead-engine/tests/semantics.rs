//! The engine's semantics on small, readable scenarios.

use std::net::IpAddr;

use bulkhead_api::load_str;
use bulkhead_api::values::Protocol;
use bulkhead_engine::failsafe::Failsafe;
use bulkhead_engine::host_defaults::{EndpointToHost, HostDefaults};
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
spec: {node: n1, interfaceName: eth0, expectedIPs: [10.66.0.1]}
"#;

/// A pod on node n1, whose host endpoint is `h` (10.66.0.1).
const LOCAL_POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: local, namespace: x, labels: {app: local}}\nspec: {nodeName: n1}\nstatus: {podIP: 10.65.1.1}\n---\n";

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
fn failsafe_ports_are_the_nodes_configuration() {
    let mut c = cluster(
        "apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata: {name: bare}\nspec: {node: n2, expectedIPs: [10.66.0.9]}\n",
    );
    let to_bare = |c: &Cluster, port| c.evaluate(&tcp("198.18.0.1", "10.66.0.9", port)).verdict();
    let from_bare = |c: &Cluster, port| c.evaluate(&tcp("10.66.0.9", "198.18.0.1", port)).verdict();
    c.override_host_defaults(HostDefaults {
        failsafe: Failsafe {
            inbound: Failsafe::parse_ports("tcp:80,tcp:198.18.0.0/24:8080").expect("valid"),
            outbound: Vec::new(),
        },
        ..HostDefaults::default()
    });
    assert_eq!(to_bare(&c, 22), Verdict::Deny, "22 is no longer failsafe");
    assert_eq!(to_bare(&c, 80), Verdict::Allow);
    assert_eq!(to_bare(&c, 8080), Verdict::Allow, "from its net");
    assert_eq!(
        c.evaluate(&tcp("203.0.113.1", "10.66.0.9", 8080)).verdict(),
        Verdict::Deny,
        "from outside its net"
    );
    let dns = Flow::with_port(ip("10.66.0.9"), ip("198.18.0.1"), Protocol::UDP, 53);
    assert_eq!(
        c.evaluate(&dns).verdict(),
        Verdict::Deny,
        "no outbound ones"
    );
    assert_eq!(from_bare(&c, 80), Verdict::Deny);
    c.override_host_defaults(HostDefaults::default());
    assert_eq!(c.evaluate(&dns).verdict(), Verdict::Allow);
    assert_eq!(to_bare(&c, 22), Verdict::Allow);
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
spec: {node: n2, interfaceName: eth0, expectedIPs: [10.66.0.2], profiles: [projectcalico-default-allow]}
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

#[test]
fn a_star_host_endpoint_takes_no_untracked_policy() {
    let c = cluster(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: untracked}
spec:
  selector: role == 'host'
  doNotTrack: true
  applyOnForward: true
  ingress: [{action: Deny, protocol: TCP, destination: {ports: [80]}}]
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: all, labels: {role: host}}
spec: {node: n2, interfaceName: "*", expectedIPs: [10.66.0.2], profiles: [projectcalico-default-allow]}
"#,
    );
    let tcp80 = tcp("10.65.0.1", "10.66.0.2", 80);
    let d = c.evaluate(&tcp80);
    assert_eq!(d.verdict(), Verdict::Allow, "the profile decides");
    assert_eq!(
        d.enforced.decided_by().map(|h| h.policy.kind),
        Some(bulkhead_api::Kind::Profile)
    );
    // The same policy denies at the named endpoint h.
    assert_eq!(
        c.evaluate(&tcp("10.65.0.1", "10.66.0.1", 80)).verdict(),
        Verdict::Deny
    );
}

/// A gateway host with two host endpoints: `eth0` (outside) and `eth1` (inside).
const GATEWAY: &str = r#"
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: gw-eth0, labels: {side: outside}}
spec: {node: gw, interfaceName: eth0, expectedIPs: [10.66.0.9]}
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: gw-eth1, labels: {side: inside}}
spec: {node: gw, interfaceName: eth1, expectedIPs: [10.66.1.9]}
"#;

#[test]
fn forwarded_traffic_is_governed_by_apply_on_forward_policies_only() {
    // Policies without applyOnForward govern the host's own traffic, not what it forwards.
    let c = cluster(&format!(
        "{GATEWAY}---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: host-only}}\nspec:\n  selector: has(side)\n  ingress: [{{action: Deny}}]\n  egress: [{{action: Deny}}]\n"
    ));
    let through = c.via(Some("gw-eth0"), Some("gw-eth1")).expect("both exist");
    let flow = tcp("198.18.0.1", "198.19.0.1", 443);
    let d = c.evaluate_via(&flow, through);
    assert_eq!(d.verdict(), Verdict::Allow, "{d:?}");
    assert_eq!(d.enforced.sides().count(), 2);
    // The host itself is denied by the same policy.
    assert_eq!(
        c.evaluate(&tcp("198.18.0.1", "10.66.0.9", 443)).verdict(),
        Verdict::Deny
    );
    assert_eq!(
        c.via(Some("nope"), None).expect_err("unknown"),
        "no HostEndpoint is named \"nope\""
    );

    // With applyOnForward, ingress through eth0 is limited to HTTPS from 198.18.0.0/16;
    // egress through eth1 has no such policy and stays open.
    let c = cluster(&format!(
        r#"{GATEWAY}---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {{name: outside-in}}
spec:
  selector: side == 'outside'
  applyOnForward: true
  types: [Ingress]
  ingress:
    - {{action: Allow, protocol: TCP, source: {{nets: [198.18.0.0/16]}}, destination: {{ports: [443]}}}}
"#
    ));
    let through = c.via(Some("gw-eth0"), Some("gw-eth1")).expect("both exist");
    assert_eq!(c.evaluate_via(&flow, through).verdict(), Verdict::Allow);
    let ssh = tcp("198.18.0.1", "198.19.0.1", 22);
    let d = c.evaluate_via(&ssh, through);
    assert_eq!(
        d.verdict(),
        Verdict::Deny,
        "no failsafe for forwarded traffic"
    );
    let hit = d.enforced.decided_by().expect("a deciding hit");
    assert_eq!(
        (hit.rule, &*hit.policy.name),
        (RuleRef::EndOfTier, "outside-in")
    );
    let text = bulkhead_engine::explain::explain(&c, &ssh, &d, "client", "server");
    assert!(
        text.contains("Forwarded: in through host/gw-eth0, out through host/gw-eth1"),
        "{text}"
    );
    assert!(
        text.contains("Decided by: forwarding in through host/gw-eth0"),
        "{text}"
    );
    assert!(text.contains("applyOnForward tier default"), "{text}");
    assert!(
        text.contains("Forwarded out through host/gw-eth1: ALLOW"),
        "{text}"
    );
    // The same flow into a local workload also needs the workload's ingress.
    let to_pod = tcp("198.18.0.1", "10.65.0.1", 443);
    let into = c.via(Some("gw-eth0"), None).expect("exists");
    let d = c.evaluate_via(&to_pod, into);
    assert_eq!(d.verdict(), Verdict::Allow);
    assert_eq!(d.enforced.sides().count(), 2);

    // A tier that passes everything leaves no profile to decide: denied.
    let c = cluster(&format!(
        "{GATEWAY}---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: pass}}\nspec:\n  selector: side == 'inside'\n  applyOnForward: true\n  egress: [{{action: Pass}}]\n"
    ));
    let out = c.via(None, Some("gw-eth1")).expect("exists");
    let d = c.evaluate_via(&flow, out);
    assert_eq!(d.verdict(), Verdict::Deny);
    assert_eq!(
        d.enforced.decided_by().map(|h| (h.rule, h.action)),
        Some((RuleRef::NoProfile, HitAction::Deny))
    );
}

#[test]
fn a_pre_dnat_allow_skips_the_forward_policies_of_its_host_endpoint_only() {
    let c = cluster(&format!(
        r#"{GATEWAY}---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {{name: prednat}}
spec:
  selector: side == 'outside'
  preDNAT: true
  applyOnForward: true
  ingress:
    - {{action: Allow, protocol: TCP, destination: {{ports: [8080, 7070]}}}}
    - {{action: Deny, protocol: TCP, destination: {{ports: [9090]}}}}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {{name: forward-deny}}
spec:
  selector: side == 'outside'
  applyOnForward: true
  ingress: [{{action: Deny}}]
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {{name: a-8080-only, namespace: x}}
spec:
  selector: app == 'a'
  ingress: [{{action: Allow, protocol: TCP, destination: {{ports: [8080]}}}}]
"#
    ));
    let into = c.via(Some("gw-eth0"), None).expect("exists");
    let verdict = |port| {
        c.evaluate_via(&tcp("198.18.0.1", "10.65.0.1", port), into)
            .verdict()
    };
    assert_eq!(verdict(8080), Verdict::Allow, "pre-DNAT allow, pod allows");
    assert_eq!(verdict(9090), Verdict::Deny, "pre-DNAT deny");
    assert_eq!(verdict(80), Verdict::Deny, "the forward policy denies");
    // The pre-DNAT allow does not skip the workload's own ingress, which allows 8080 only.
    let d = c.evaluate_via(&tcp("198.18.0.1", "10.65.0.1", 7070), into);
    assert_eq!(d.verdict(), Verdict::Deny);
    let side = d.enforced.deciding_side().expect("a deciding side");
    assert_eq!(side.endpoint.to_string(), "x/a");
    assert_eq!(
        d.enforced.forwarded_in.as_ref().map(|s| s.verdict),
        Some(Verdict::Allow)
    );
}

#[test]
fn a_host_and_its_own_workloads_meet_only_the_workloads_egress() {
    let c = cluster(&format!(
        "{LOCAL_POD}{}",
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: lockdown}
spec:
  selector: role == 'host' || app == 'local' || app == 'a'
  types: [Ingress, Egress]
  egress: [{action: Allow, protocol: TCP, destination: {ports: [443]}}]
"#
    ));
    // The pod on n1 reaches its host when its own egress allows; the host's ingress
    // (nothing allowed) does not apply.
    assert_eq!(
        c.evaluate(&tcp("10.65.1.1", "10.66.0.1", 443)).verdict(),
        Verdict::Allow
    );
    let d = c.evaluate(&tcp("10.65.1.1", "10.66.0.1", 80));
    assert_eq!(d.verdict(), Verdict::Deny);
    assert!(d.enforced.ingress.is_none(), "{d:?}");
    // The host reaches its own pod whatever either policy says.
    let d = c.evaluate(&tcp("10.66.0.1", "10.65.1.1", 80));
    assert_eq!(d.verdict(), Verdict::Allow);
    assert_eq!(d.enforced.sides().count(), 0);
    let text = bulkhead_engine::explain::explain(
        &c,
        &tcp("10.66.0.1", "10.65.1.1", 80),
        &d,
        "host/h",
        "x/local",
    );
    assert!(
        text.contains("Ingress to x/local: traffic between a host and its own workloads"),
        "{text}"
    );
    // A pod whose node is unknown (x/a) meets both sides, as any other pair.
    assert_eq!(
        c.evaluate(&tcp("10.65.0.1", "10.66.0.1", 443)).verdict(),
        Verdict::Deny
    );
    assert_eq!(
        c.evaluate(&tcp("10.66.0.1", "10.65.0.1", 443)).verdict(),
        Verdict::Deny
    );
}

#[test]
fn default_endpoint_to_host_drop_keeps_workloads_out_of_their_own_host() {
    let mut c = cluster(&format!(
        "{LOCAL_POD}{}",
        r#"
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: other}
spec: {node: n2, interfaceName: eth0, expectedIPs: [10.66.0.2]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: pods-out}
spec:
  selector: app == 'local'
  types: [Egress]
  egress: [{action: Allow, protocol: TCP, destination: {ports: [443]}}]
"#
    ));
    c.override_host_defaults(HostDefaults {
        endpoint_to_host: EndpointToHost::Drop,
        ..HostDefaults::default()
    });
    let to_own = tcp("10.65.1.1", "10.66.0.1", 443);
    let d = c.evaluate(&to_own);
    assert_eq!(d.verdict(), Verdict::Deny);
    assert_eq!(
        c.verdict(bulkhead_engine::Mode::Enforced, &to_own),
        Verdict::Deny
    );
    // The node's action ends the workload's egress (Felix's `cali-wl-to-host`), after
    // the policy that allowed the flow; the host's own policy is not consulted.
    let egress = d.enforced.egress.as_ref().expect("the workload's side");
    assert_eq!(egress.verdict, Verdict::Deny);
    let hits: Vec<_> = egress.trace.iter().map(|h| (h.rule, h.action)).collect();
    assert_eq!(
        hits,
        [
            (RuleRef::Index(0), HitAction::Allow),
            (RuleRef::EndpointToHost, HitAction::Deny)
        ],
        "the workload's egress still runs first"
    );
    assert_eq!(
        d.enforced.decided_by().map(|h| h.policy.to_string()),
        Some("node:n1".to_string())
    );
    assert!(d.enforced.ingress.is_none(), "{d:?}");
    let text = bulkhead_engine::explain::explain(&c, &to_own, &d, "x/local", "host/h");
    assert!(
        text.contains("then to its own host, node n1: DefaultEndpointToHostAction is Drop -> DENY"),
        "{text}"
    );
    assert!(
        text.contains("Ingress to host/h: traffic between a host and its own workloads"),
        "{text}"
    );
    // The egress still denies what it denies, before the host's action.
    let d = c.evaluate(&tcp("10.65.1.1", "10.66.0.1", 80));
    assert_eq!(d.verdict(), Verdict::Deny);
    assert_eq!(
        d.enforced.egress.as_ref().map(|s| s.verdict),
        Some(Verdict::Deny)
    );
    // Another node's host judges by its own policy (none, no profile: deny), and the
    // host's own traffic to its pod is not affected.
    let d = c.evaluate(&tcp("10.65.1.1", "10.66.0.2", 443));
    assert_eq!(
        d.enforced.decided_by().map(|h| h.rule),
        Some(RuleRef::NoProfile),
        "{d:?}"
    );
    assert_eq!(
        c.evaluate(&tcp("10.66.0.1", "10.65.1.1", 80)).verdict(),
        Verdict::Allow
    );
    // Return and Accept let the egress decide alone.
    for admits in [EndpointToHost::Return, EndpointToHost::Accept] {
        c.override_host_defaults(HostDefaults {
            endpoint_to_host: admits,
            ..HostDefaults::default()
        });
        assert_eq!(c.evaluate(&to_own).verdict(), Verdict::Allow, "{admits}");
    }
}

/// Two nodes known only by their `Node` resources (no host endpoint names these
/// addresses), and a pod on n1 that admits pods only.
const NODES: &str = r#"
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: n1}
spec:
  bgp: {asNumber: 64512, ipv4Address: 10.66.1.1/24}
  addresses: [{address: 10.66.1.1/24, type: CalicoNodeIP}, {address: "fd66::1", type: InternalIP}]
  wireguard: {interfaceIPv4Address: 10.66.9.1}
status: {podCIDRs: [10.65.1.0/24]}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: n2}
spec: {ipv4VXLANTunnelAddr: 10.66.2.1}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: pods-only}
spec:
  selector: app == 'local'
  ingress: [{action: Allow, source: {nets: [10.65.0.0/16]}}]
  egress: [{action: Allow}]
"#;

#[test]
fn a_node_resource_makes_its_addresses_the_hosts_own() {
    let with_nodes = cluster(&format!("{LOCAL_POD}{NODES}"));
    for ip in ["10.66.1.1", "10.66.9.1", "fd66::1"] {
        assert_eq!(with_nodes.node_at(self::ip(ip)), Some("n1"), "{ip}");
    }
    assert_eq!(with_nodes.node_at(ip("10.66.2.1")), Some("n2"));
    assert_eq!(
        with_nodes.node_at(ip("10.66.0.1")),
        Some("n1"),
        "by host endpoint h"
    );
    assert_eq!(
        with_nodes.node_at(ip("10.65.1.1")),
        None,
        "a workload's address"
    );
    let without = cluster(&format!(
        "{LOCAL_POD}{}",
        NODES.split("---").last().expect("the policy")
    ));

    // The host's traffic to its own pod is not policed: only with the Node is 10.66.1.1
    // known as n1's.
    let from_host = tcp("10.66.1.1", "10.65.1.1", 80);
    assert_eq!(with_nodes.evaluate(&from_host).verdict(), Verdict::Allow);
    assert_eq!(without.evaluate(&from_host).verdict(), Verdict::Deny);
    let d = with_nodes.evaluate(&from_host);
    assert!(
        d.enforced.egress.is_none() && d.enforced.ingress.is_none(),
        "{d:?}"
    );
    let text =
        bulkhead_engine::explain::explain(&with_nodes, &from_host, &d, "10.66.1.1", "x/local");
    assert!(
        text.contains(
            "Ingress to x/local: traffic between a host and its own workloads, not policed"
        ),
        "{text}"
    );
    // Another node's address is any other source.
    assert_eq!(
        with_nodes
            .evaluate(&tcp("10.66.2.1", "10.65.1.1", 80))
            .verdict(),
        Verdict::Deny
    );

    // With Drop, the pod reaches none of its own node's addresses, and still reaches n2.
    let mut c = with_nodes;
    c.override_host_defaults(HostDefaults {
        endpoint_to_host: EndpointToHost::Drop,
        ..HostDefaults::default()
    });
    for ip in ["10.66.1.1", "10.66.9.1"] {
        let flow = tcp("10.65.1.1", ip, 443);
        let d = c.evaluate(&flow);
        assert_eq!(d.verdict(), Verdict::Deny, "{ip}");
        assert_eq!(
            c.verdict(bulkhead_engine::Mode::Enforced, &flow),
            Verdict::Deny
        );
        let hit = d.enforced.decided_by().expect("a deciding hit");
        assert_eq!(
            (hit.rule, hit.policy.to_string()),
            (RuleRef::EndpointToHost, "node:n1".into())
        );
    }
    let flow = tcp("10.65.1.1", "10.66.1.1", 443);
    let text =
        bulkhead_engine::explain::explain(&c, &flow, &c.evaluate(&flow), "x/local", "10.66.1.1");
    assert!(
        text.contains("DefaultEndpointToHostAction Drop, from the agent's flag"),
        "{text}"
    );
    assert_eq!(
        c.evaluate(&tcp("10.65.1.1", "10.66.2.1", 443)).verdict(),
        Verdict::Allow
    );
}

#[test]
fn felix_configurations_set_each_nodes_defaults_and_flags_win() {
    let mut c = cluster(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: local, namespace: x}
spec: {nodeName: n1}
status: {podIP: 10.65.1.1}
---
apiVersion: v1
kind: Pod
metadata: {name: far, namespace: x}
spec: {nodeName: n2}
status: {podIP: 10.65.2.1}
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: h2}
spec: {node: n2, interfaceName: eth0, expectedIPs: [10.66.0.2]}
---
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: default}
spec:
  failsafeInboundHostPorts: [{port: 2222}]
  logSeverityScreen: Info
---
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: node.n1}
spec: {defaultEndpointToHostAction: Drop}
"#,
    );
    // n1 (host endpoint h): its own Drop; n2 (h2): the global Accept.
    let to_n1 = tcp("10.65.1.1", "10.66.0.1", 443);
    let to_n2 = tcp("10.65.2.1", "10.66.0.2", 443);
    assert_eq!(c.evaluate(&to_n1).verdict(), Verdict::Deny);
    assert_eq!(c.evaluate(&to_n2).verdict(), Verdict::Allow);
    // The global failsafe list, on both nodes: 2222 instead of Felix's 22.
    for host in ["10.66.0.1", "10.66.0.2"] {
        assert_eq!(
            c.evaluate(&tcp("198.18.0.1", host, 2222)).verdict(),
            Verdict::Allow
        );
        assert_eq!(
            c.evaluate(&tcp("198.18.0.1", host, 22)).verdict(),
            Verdict::Deny
        );
    }
    // Explanations say which entry matched and where the setting came from.
    let why = |c: &Cluster, flow: &Flow, from: &str, to: &str| {
        bulkhead_engine::explain::explain(c, flow, &c.evaluate(flow), from, to)
    };
    let failsafe = tcp("198.18.0.1", "10.66.0.2", 2222);
    let text = why(&c, &failsafe, "198.18.0.1", "host/h2");
    assert!(
        text.contains(
            "the entry tcp:2222 of failsafeInboundHostPorts, from FelixConfiguration default"
        ),
        "{text}"
    );
    let text = why(&c, &to_n1, "x/local", "host/h");
    assert!(
        text.contains("DefaultEndpointToHostAction Drop, from FelixConfiguration node.n1"),
        "{text}"
    );
    // An agent's flags win over every FelixConfiguration.
    c.override_host_defaults(HostDefaults {
        endpoint_to_host: EndpointToHost::Accept,
        ..HostDefaults::default()
    });
    assert_eq!(c.evaluate(&to_n1).verdict(), Verdict::Allow);
    assert_eq!(
        c.evaluate(&tcp("198.18.0.1", "10.66.0.1", 22)).verdict(),
        Verdict::Allow
    );
    let text = why(
        &c,
        &tcp("198.18.0.1", "10.66.0.1", 22),
        "198.18.0.1",
        "host/h",
    );
    assert!(
        text.contains("the entry tcp:22 of failsafeInboundHostPorts, from the agent's flag"),
        "{text}"
    );
}
