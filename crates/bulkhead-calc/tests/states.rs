//! Felix-style state sequences (`calc_graph_fv_test.go` + `states_for_test.go`): named
//! datastore states, walked in sequences that expanders multiply, under several flush
//! strategies. The dataplane state must depend only on the current datastore state, not
//! on the path taken to it; the from-scratch renderer says what that state is, and each
//! state also asserts a few facts by hand so that the oracle is never trivially empty.
//!
//! Expanders: reversed resource order within each state, reversed state order, empty
//! states interleaved, each state alone, all squashed into the last. Flush strategies:
//! after every resource, after every state, only at the end. A symmetric harness never
//! deletes something while something else still refers to it ("A deleted while B still
//! references it"), so `asymmetric_teardown` does that on purpose.

mod common;

use std::collections::BTreeSet;

use bulkhead_api::{Resource, ResourceKey, load_str};
use bulkhead_dataplane::Table;
use bulkhead_dataplane::tag::{RuleTag, TagVerdict, TaggedRule};
use common::Harness;

/// A named datastore state and facts its table must show.
struct State {
    name: &'static str,
    yaml: &'static str,
    expect: fn(&Table),
}

const NS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {env: prod}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec:
  nodeName: node-a
  containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]
status: {podIP: 10.0.0.1, podIPs: [{ip: 10.0.0.1}, {ip: "fd00::1"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web2, namespace: shop, labels: {app: web}}
spec:
  nodeName: node-a
  containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: shop, labels: {app: db}}
spec: {nodeName: node-b}
status: {podIP: 10.0.0.9}
"#;

/// A local pod, one policy on port 80 and one on `$b_ports` (a YAML flow list): the two
/// dispatch states differ only in the second policy's ports. (A macro, so that the text is
/// a literal.)
macro_rules! web_pod_and_two_policies {
    ($b_ports:literal) => {
        concat!(
            r#"
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {nodeName: node-a}
status: {podIP: 10.0.0.1}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: web-a, namespace: shop}
spec:
  selector: app == 'web'
  ingress: [{action: Allow, protocol: TCP, destination: {ports: [80]}}]
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: web-b, namespace: shop}
spec:
  selector: app == 'web'
  ingress: [{action: Allow, protocol: TCP, destination: {ports: "#,
            $b_ports,
            "}}]\n"
        )
    };
}

fn states() -> Vec<State> {
    vec![
        State {
            name: "pods, one namespace, two local pods sharing an address",
            yaml: NS,
            expect: |t| {
                assert_eq!(t.maps["wl_from"].elements.len(), 2);
                // The namespace's profile allows everything: the pods' chains allow at
                // once, without a profile chain to jump to.
                assert!(allowed_by_profile(t));
                assert!(!t.chains.contains_key("r.kns.shop.in"));
            },
        },
        State {
            name: "a policy with selector and named-port sets",
            yaml: concat!(
                r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: allow-db, namespace: shop}
spec:
  selector: app == 'web'
  ingress:
    - action: Allow
      protocol: TCP
      source: {selector: app == 'db'}
      destination: {ports: [http]}
  egress:
    - action: Allow
      destination: {selector: app == 'db'}
---"#,
                r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {env: prod}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec:
  nodeName: node-a
  containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]
status: {podIP: 10.0.0.1, podIPs: [{ip: 10.0.0.1}, {ip: "fd00::1"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: shop, labels: {app: db}}
spec: {nodeName: node-b}
status: {podIP: 10.0.0.9}
"#
            ),
            expect: |t| {
                let s4: Vec<_> = t
                    .sets
                    .iter()
                    .filter(|(n, _)| n.starts_with("s4_"))
                    .collect();
                assert!(s4.iter().any(|(_, s)| s.elements.contains("10.0.0.9")));
                let n4: Vec<_> = t
                    .sets
                    .iter()
                    .filter(|(n, _)| n.starts_with("n4_"))
                    .collect();
                assert!(
                    n4.iter()
                        .any(|(_, s)| s.elements.contains("10.0.0.1 . tcp . 8080"))
                );
            },
        },
        State {
            name: "tiers with Pass and Deny, network sets overlapping",
            yaml: r#"
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 10, defaultAction: Pass}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: block-ext}
spec:
  tier: security
  selector: all()
  types: [Ingress]
  ingress:
    - action: Deny
      source: {selector: ext == 'yes'}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: wide, labels: {ext: "yes"}}
spec: {nets: [10.0.0.0/16, "fd00::/64"]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: narrow, labels: {ext: "yes"}}
spec: {nets: [10.0.1.0/24]}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {nodeName: node-a}
status: {podIP: 10.0.0.1}
"#,
            expect: |t| {
                assert!(
                    t.sets
                        .values()
                        .any(|s| s.elements == BTreeSet::from(["10.0.0.0/16".to_string()]))
                );
                assert!(t.chains.keys().any(|c| c == "p.gnp.block-ext.in"));
            },
        },
        State {
            name: "namespace relabelled, a namespaceSelector policy, service accounts",
            yaml: r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {env: dev}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: front, namespace: shop, labels: {role: front}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {nodeName: node-a, serviceAccountName: front}
status: {podIP: 10.0.0.1}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: dev-only}
spec:
  namespaceSelector: env == 'dev'
  ingress:
    - action: Allow
      source: {serviceAccounts: {selector: role == 'front'}}
"#,
            expect: |t| {
                assert!(t.chains.contains_key("p.gnp.dev-only.in"));
                assert!(t.sets.values().any(|s| s.elements.contains("10.0.0.1")));
            },
        },
        State {
            name: "a local host endpoint with profiles, a KNP with named ports",
            yaml: r#"
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: eth0-a, labels: {role: host}}
spec: {node: node-a, interfaceName: eth0, expectedIPs: [192.168.0.1], profiles: [gone, projectcalico-default-allow]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
    - from: [{podSelector: {matchLabels: {app: db}}}]
      ports: [{port: http}]
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec:
  nodeName: node-a
  containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]
status: {podIP: 10.0.0.1}
"#,
            expect: |t| {
                assert!(t.chains.contains_key("failsafe.in"));
                // A missing profile drops; the allow-all one after it is an accept,
                // tagged as that profile's rule 0.
                let rules = &t.chains["h.eth0-a.in"].rules;
                assert!(
                    rules
                        .iter()
                        .any(|r| r.contains("profile gone does not exist"))
                );
                let first = TaggedRule::Profile {
                    profile: "projectcalico-default-allow".into(),
                    index: 0,
                };
                let tag = RuleTag::new(&first, TagVerdict::Allow, true);
                let accept = format!("{} accept", tag.statement());
                assert_eq!(rules.last(), Some(&accept));
                assert!(t.chains.contains_key("p.knp.shop/web.in"));
            },
        },
        State {
            name: "two policies on one pod: its ingress chain dispatches by port",
            yaml: web_pod_and_two_policies!(r#"[443]"#),
            expect: |t| {
                let vmap = ingress_dispatch(t);
                assert!(vmap.contains("tcp . 80 : goto d."), "{vmap}");
                assert!(vmap.contains("tcp . 443 : goto d."), "{vmap}");
            },
        },
        State {
            name: "the same policies, one with other ports only",
            yaml: web_pod_and_two_policies!(r#"["8000:8080"]"#),
            expect: |t| {
                let vmap = ingress_dispatch(t);
                assert!(vmap.contains("tcp . 8000-8080 : goto d."), "{vmap}");
                assert!(!vmap.contains("443"), "{vmap}");
            },
        },
    ]
}

/// True if a workload ingress chain of `t` ends by allowing (an allow-all profile).
fn allowed_by_profile(t: &Table) -> bool {
    t.chains.iter().any(|(n, c)| {
        n.starts_with("w.")
            && n.ends_with(".in")
            && c.rules
                .last()
                .is_some_and(|r| r.starts_with("log prefix \"AI") && r.ends_with(" accept"))
    })
}

/// The dispatch rule of the only workload ingress chain of `t`.
fn ingress_dispatch(t: &Table) -> &str {
    let chains: Vec<_> = t
        .chains
        .iter()
        .filter(|(n, _)| n.starts_with("w.") && n.ends_with(".in"))
        .collect();
    assert_eq!(chains.len(), 1, "one workload: {:?}", t.chains.keys());
    chains[0]
        .1
        .rules
        .iter()
        .find(|r| r.contains(" vmap "))
        .map(String::as_str)
        .unwrap_or_else(|| panic!("no dispatch: {:?}", chains[0].1.rules))
}

fn parse(yaml: &str) -> Vec<Resource> {
    load_str("state", yaml)
        .unwrap_or_else(|e| panic!("invalid state: {e}"))
        .into_iter()
        .map(|l| l.resource)
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum FlushAfter {
    EachResource,
    EachState,
    End,
}

/// Walks `sequence` (indexes into `states`; `None` = the empty state).
fn walk(states: &[State], sequence: &[Option<usize>], reverse_kvs: bool, flush: FlushAfter) {
    let mut h = Harness::default();
    for (step, &s) in sequence.iter().enumerate() {
        let mut resources = s.map(|i| parse(states[i].yaml)).unwrap_or_default();
        if reverse_kvs {
            resources.reverse();
        }
        let keep: BTreeSet<ResourceKey> = resources.iter().map(Resource::key).collect();
        let gone: Vec<ResourceKey> = h
            .store
            .keys()
            .filter(|k| !keep.contains(*k))
            .cloned()
            .collect();
        let context = |what: &str| {
            format!(
                "step {step} ({}) {what}, kvs reversed: {reverse_kvs}, flush {flush:?}",
                s.map_or("empty", |i| states[i].name)
            )
        };
        let mut updates: Vec<bulkhead_calc::Update> = resources
            .into_iter()
            .map(bulkhead_calc::Update::Upsert)
            .collect();
        let deletes = gone.into_iter().map(bulkhead_calc::Update::Delete);
        if reverse_kvs {
            updates.splice(0..0, deletes);
        } else {
            updates.extend(deletes);
        }
        for u in updates {
            h.apply(u);
            if flush == FlushAfter::EachResource {
                h.check(&context("after a resource"));
            }
        }
        if flush != FlushAfter::End {
            let table = h.check(&context("at the end of the state"));
            if let Some(i) = s {
                (states[i].expect)(&table);
            }
        }
    }
    let table = h.check("at the end");
    if let Some(Some(i)) = sequence.last() {
        (states[*i].expect)(&table);
    }
}

fn expansions(n: usize) -> Vec<Vec<Option<usize>>> {
    let base: Vec<Option<usize>> = (0..n).map(Some).collect();
    let mut reversed = base.clone();
    reversed.reverse();
    let with_empties: Vec<Option<usize>> = base.iter().flat_map(|s| [*s, None]).collect();
    let mut out = vec![base.clone(), reversed, with_empties];
    out.extend((0..n).map(|i| vec![Some(i)]));
    out.push(vec![Some(n - 1)]);
    // Every state after every other: each transition once.
    out.push(
        (0..n)
            .flat_map(|a| (0..n).flat_map(move |b| [Some(a), Some(b)]))
            .collect(),
    );
    out
}

#[test]
fn every_expansion_and_flush_strategy_ends_in_the_from_scratch_table() {
    let states = states();
    let mut walks = 0;
    for sequence in expansions(states.len()) {
        for reverse_kvs in [false, true] {
            for flush in [
                FlushAfter::EachResource,
                FlushAfter::EachState,
                FlushAfter::End,
            ] {
                walk(&states, &sequence, reverse_kvs, flush);
                walks += 1;
            }
        }
    }
    assert_eq!(walks, 72);
}

#[test]
fn asymmetric_teardown() {
    let mut h = Harness::default();
    for r in parse(states()[1].yaml) {
        h.upsert(r);
    }
    for r in parse(states()[2].yaml) {
        h.upsert(r);
    }
    h.check("everything");
    // The namespace goes while its pods stay: they keep an implied namespace profile.
    h.delete(&ResourceKey {
        kind: bulkhead_api::Kind::Namespace,
        namespace: None,
        name: "shop".into(),
    });
    let t = h.check("namespace deleted under its pods");
    assert!(allowed_by_profile(&t));
    // The tier goes while its policy stays: the policy is parked, then comes back.
    let tier = ResourceKey {
        kind: bulkhead_api::Kind::Tier,
        namespace: None,
        name: "security".into(),
    };
    let tier_resource = h.store[&tier].clone();
    h.delete(&tier);
    let t = h.check("tier deleted under its policy");
    assert!(!t.chains.contains_key("p.gnp.block-ext.in"));
    assert_eq!(h.graph.errors().len(), 1);
    h.upsert(tier_resource);
    let t = h.check("tier back");
    assert!(t.chains.contains_key("p.gnp.block-ext.in"));
    // The wide network set goes while the narrow one overlaps it.
    h.delete(&ResourceKey {
        kind: bulkhead_api::Kind::GlobalNetworkSet,
        namespace: None,
        name: "wide".into(),
    });
    let t = h.check("covering network set deleted");
    assert!(t.sets.values().any(|s| s.elements.contains("10.0.1.0/24")));
}
