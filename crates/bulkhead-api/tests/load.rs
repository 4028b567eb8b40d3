//! Loading: every kind, defaulting, and precise errors that change nothing.

use bulkhead_api::values::{EndpointToHost, PolicyType, StagedAction};
use bulkhead_api::{Kind, LoadErrors, Resource, load_str};

fn errors(text: &str) -> LoadErrors {
    match load_str("test.yaml", text) {
        Ok(r) => panic!("expected errors, loaded {} resources", r.len()),
        Err(e) => e,
    }
}

const EVERY_KIND: &str = r#"
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100, defaultAction: Pass}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: g}
spec:
  tier: security
  selector: all()
  egress: [{action: Allow, protocol: UDP, destination: {ports: [53, "100:200"]}}]
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: n, namespace: x}
spec: {selector: app == 'a', ingress: [{action: Deny, source: {nets: [10.0.0.0/8]}}]}
---
apiVersion: projectcalico.org/v3
kind: StagedGlobalNetworkPolicy
metadata: {name: sg}
spec: {stagedAction: Delete}
---
apiVersion: projectcalico.org/v3
kind: StagedNetworkPolicy
metadata: {name: sn, namespace: x}
spec: {selector: all(), types: [Ingress]}
---
apiVersion: projectcalico.org/v3
kind: StagedKubernetesNetworkPolicy
metadata: {name: sk, namespace: x}
spec: {podSelector: {}, policyTypes: [Ingress]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: k, namespace: x}
spec:
  podSelector: {matchLabels: {app: a}}
  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}], ports: [{port: 80, endPort: 90}]}]
  egress: [{to: [{namespaceSelector: {}}]}]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: gs, labels: {feed: bad}}
spec: {nets: [198.51.100.0/24]}
---
apiVersion: projectcalico.org/v3
kind: NetworkSet
metadata: {name: ns1, namespace: x}
spec: {nets: ["2001:db8::/32"]}
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: h, labels: {role: db}}
spec: {node: n1, interfaceName: "*", expectedIPs: [10.66.0.1]}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: w, namespace: x}
spec: {node: n1, ipNetworks: [10.65.0.9/32], ports: [{name: http, protocol: TCP, port: 80}]}
---
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: p}
spec: {ingress: [{action: Allow}], labelsToApply: {zone: dmz}}
---
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {env: prod}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: web, namespace: x}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: a}}
spec: {serviceAccountName: web, containers: [{name: c, ports: [{containerPort: 80, name: http}]}]}
status: {podIP: 10.65.0.10}
---
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: default}
spec:
  failsafeInboundHostPorts: [{protocol: TCP, port: 22}, {port: 2222}, {protocol: tcp, port: 22, net: 10.0.0.0/8}]
  failsafeOutboundHostPorts: []
  defaultEndpointToHostAction: DROP
  logSeverityScreen: Info
  iptablesRefreshInterval: 90s
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: n1, labels: {kubernetes.io/hostname: n1}}
spec:
  bgp: {asNumber: 64512, ipv4Address: 10.66.0.1/24, ipv4IPIPTunnelAddr: 10.65.1.0}
  addresses: [{address: 10.66.0.1/24, type: CalicoNodeIP}, {address: "fd66::1", type: InternalIP}]
  ipv4VXLANTunnelAddr: 10.65.1.1
  vxlanTunnelMACAddr: "66:a1:3e:44:01:02"
  wireguard: {interfaceIPv4Address: 10.65.1.2}
  orchRefs: [{nodeName: n1, orchestrator: k8s}]
status: {podCIDRs: [10.65.1.0/24], wireguardPublicKey: "x"}
"#;

#[test]
fn loads_every_kind_with_defaults() {
    let loaded = load_str("every.yaml", EVERY_KIND).expect("valid resources");
    let kinds: Vec<Kind> = loaded.iter().map(|l| l.resource.kind()).collect();
    assert_eq!(kinds.len(), 17);
    for k in Kind::ALL {
        assert!(kinds.contains(&k), "{k:?} not loaded");
    }
    for l in &loaded {
        match &l.resource {
            Resource::NetworkPolicy(p) => {
                assert_eq!(p.spec.tier.as_deref(), Some("default"));
                assert_eq!(p.spec.types, vec![PolicyType::Ingress]);
            }
            Resource::GlobalNetworkPolicy(p) => assert_eq!(p.spec.types, vec![PolicyType::Egress]),
            Resource::StagedNetworkPolicy(p) => {
                assert_eq!(p.spec.staged_action, Some(StagedAction::Set))
            }
            Resource::KubernetesNetworkPolicy(p) => assert_eq!(
                p.spec.policy_types,
                vec![PolicyType::Ingress, PolicyType::Egress]
            ),
            Resource::Pod(p) => assert_eq!(p.metadata.namespace.as_deref(), Some("x")),
            Resource::FelixConfiguration(f) => {
                let inbound = f.spec.failsafe_inbound_host_ports.as_deref();
                assert_eq!(inbound.map(|p| p.len()), Some(3));
                assert_eq!(
                    f.spec.failsafe_outbound_host_ports.as_deref(),
                    Some(&[][..])
                );
                assert_eq!(
                    f.spec.default_endpoint_to_host_action,
                    Some(EndpointToHost::Drop)
                );
                // Felix's other settings are kept, and written back out.
                assert_eq!(f.spec.other.len(), 2);
                let doc = l.resource.to_document();
                assert_eq!(doc["spec"]["iptablesRefreshInterval"], "90s");
                assert_eq!(doc["spec"]["defaultEndpointToHostAction"], "Drop");
            }
            Resource::Node(n) => {
                // Every address, each with the field it came from; the rest is kept.
                let addresses = n.spec.addresses();
                let paths: Vec<&str> = addresses.iter().map(|(p, _)| p.as_str()).collect();
                assert_eq!(
                    paths,
                    [
                        "spec.addresses[0].address",
                        "spec.addresses[1].address",
                        "spec.bgp.ipv4Address",
                        "spec.bgp.ipv4IPIPTunnelAddr",
                        "spec.ipv4VXLANTunnelAddr",
                        "spec.wireguard.interfaceIPv4Address"
                    ]
                );
                assert_eq!(addresses[1].1, "fd66::1");
                let doc = l.resource.to_document();
                assert_eq!(doc["spec"]["vxlanTunnelMACAddr"], "66:a1:3e:44:01:02");
                assert_eq!(doc["spec"]["orchRefs"][0]["orchestrator"], "k8s");
                assert_eq!(
                    doc["spec"]["wireguard"]["interfaceIPv4Address"],
                    "10.65.1.2"
                );
            }
            _ => {}
        }
    }
    assert_eq!(loaded[2].origin.document, 3);
    assert_eq!(loaded[2].origin.line, 15);
}

#[test]
fn list_wrappers_and_kubectl_fields_load() {
    let text = r#"
apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: Pod
    metadata:
      name: web-1
      namespace: shop
      uid: 4b1e
      resourceVersion: "123"
      creationTimestamp: "2026-01-01T00:00:00Z"
      managedFields: [{manager: kubectl}]
    spec:
      containers: [{name: web, image: nginx, imagePullPolicy: Always}]
      restartPolicy: Always
    status:
      phase: Running
      podIPs: [{ip: 10.65.0.3}]
"#;
    let loaded = load_str("list.yaml", text).expect("kubectl output loads");
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].origin.item.as_deref(), Some("items[0]"));
}

#[test]
fn json_documents_load() {
    let text = r#"{"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkSet",
      "metadata": {"name": "s"}, "spec": {"nets": ["10.0.0.0/8"]}}"#;
    assert_eq!(load_str("s.json", text).expect("json").len(), 1);
}

#[test]
fn unknown_field_names_path_and_line() {
    let e = errors(
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: a\nspec:\n  ingress:\n    - action: Allow\n      sorce:\n        nets: [10.0.0.0/8]\n",
    );
    assert_eq!(e.0.len(), 1);
    let err = &e.0[0];
    assert_eq!(err.field.as_deref(), Some("spec.ingress[0].sorce"));
    assert_eq!(err.line, Some(8), "{err}");
    assert!(err.message.contains("unknown field `sorce`"), "{err}");
    assert!(
        err.to_string()
            .starts_with("test.yaml: document 1 (line 8): spec.ingress[0].sorce")
    );
}

#[test]
fn invalid_selector_gives_column_and_field() {
    let e = errors(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec:\n  selector: app == web\n",
    );
    let err = &e.0[0];
    assert_eq!(err.field.as_deref(), Some("spec.selector"));
    assert_eq!(err.line, Some(5));
    assert!(err.message.contains("col 8"), "{err}");
}

#[test]
fn one_bad_document_loads_nothing_and_every_error_is_reported() {
    let text = "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: ok}\n---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec:\n  ingress: [{action: Allow, protocol: TCP, destination: {ports: [99999]}}]\n---\napiVersion: projectcalico.org/v3\nkind: Frobnicator\nmetadata: {name: f}\n";
    let e = errors(text);
    assert_eq!(e.0.len(), 2, "{e}");
    assert_eq!(e.0[0].origin.document, 2);
    assert!(e.0[0].message.contains("99999"), "{}", e.0[0]);
    assert_eq!(e.0[1].origin.document, 3);
    assert!(e.0[1].message.contains("unknown kind"), "{}", e.0[1]);
}

#[test]
fn semantic_validation_collects_field_paths() {
    let text = r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: g}
spec:
  selector: global()
  ingress:
    - action: Allow
      destination: {ports: [80]}
    - action: Allow
      protocol: TCP
      icmp: {type: 8}
      source: {nets: [10.0.0.0/8, "fd00::/8"], notNets: [0.0.0.0/0]}
"#;
    let e = errors(text);
    let fields: Vec<&str> = e.0.iter().filter_map(|x| x.field.as_deref()).collect();
    for want in [
        "spec.selector",
        "spec.ingress[0].destination.ports",
        "spec.ingress[1].icmp",
        "spec.ingress[1].source.nets[1]",
        "spec.ingress[1].source.notNets[0]",
    ] {
        assert!(fields.contains(&want), "missing {want} in {fields:?}");
    }
}

#[test]
fn felix_configuration_errors_name_the_field_and_the_line() {
    let text = r#"
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: default}
spec:
  failsafeInboundHostPorts:
    - {protocol: ICMP, port: 8}
    - {protocol: TCP, port: 22, net: 10.0.0.0/33}
    - {protocol: UDP, port: 0}
"#;
    let e = errors(text);
    let got: Vec<(&str, &str)> =
        e.0.iter()
            .map(|x| (x.field.as_deref().unwrap_or(""), x.message.as_str()))
            .collect();
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0].0, "spec.failsafeInboundHostPorts[0].protocol");
    assert!(got[0].1.contains("TCP, UDP or SCTP"), "{got:?}");
    assert_eq!(got[1].0, "spec.failsafeInboundHostPorts[1].net");
    assert!(got[1].1.contains("is not a CIDR"), "{got:?}");
    assert_eq!(got[2].0, "spec.failsafeInboundHostPorts[2].port");
    let e = errors(
        "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: default}\nspec:\n  defaultEndpointToHostAction: Reject\n",
    );
    let first = &e.0[0];
    assert_eq!(
        first.field.as_deref(),
        Some("spec.defaultEndpointToHostAction"),
        "{first}"
    );
    assert!(
        first.message.contains("expected Drop, Return or Accept"),
        "{first}"
    );
    assert_eq!(first.line, Some(5), "{first}");
}

#[test]
fn node_addresses_must_be_addresses() {
    let e = errors(
        "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: n1}\nspec:\n  bgp:\n    ipv4Address: 10.66.0.300/24\n",
    );
    let first = &e.0[0];
    assert_eq!(
        first.field.as_deref(),
        Some("spec.bgp.ipv4Address"),
        "{first}"
    );
    assert!(first.message.contains("is not an address"), "{first}");
    assert_eq!(first.line, Some(6), "{first}");
    // A misspelt field is refused, not ignored.
    let e = errors(
        "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: n1}\nspec:\n  adresses: [{address: 10.66.0.1}]\n",
    );
    let first = &e.0[0];
    assert_eq!(first.field.as_deref(), Some("spec.adresses"), "{first}");
    assert!(first.message.contains("unknown field"), "{first}");
}

#[test]
fn staged_delete_must_be_empty() {
    let e = errors(
        "apiVersion: projectcalico.org/v3\nkind: StagedNetworkPolicy\nmetadata: {name: s, namespace: x}\nspec: {stagedAction: Delete, selector: all()}\n",
    );
    assert_eq!(e.0[0].field.as_deref(), Some("spec"));
}

#[test]
fn yaml_syntax_errors_have_lines() {
    let e = errors("apiVersion: v1\nkind: Namespace\nmetadata: {name: [x\n");
    assert!(e.0[0].line.is_some(), "{}", e.0[0]);
}

#[test]
fn non_namespaced_kinds_reject_a_namespace() {
    let e = errors(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {name: s, namespace: x}\n",
    );
    assert_eq!(e.0[0].field.as_deref(), Some("metadata.namespace"));
}

#[test]
fn json_files_load_strings_yaml_cannot_hold_raw() {
    // DEL, C1 controls, NEL and U+FFFF are valid in JSON strings; the loader reads YAML.
    let note = "a\u{7f}b\u{8d}c\u{85}d\u{ffff}e";
    let doc = serde_json::json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalNetworkSet",
        "metadata": {"name": "odd", "annotations": {"note": note}},
        "spec": {"nets": ["198.18.0.0/24"]},
    });
    let dir = std::env::temp_dir().join(format!("bulkhead-api-json-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("odd.json");
    std::fs::write(&file, serde_json::to_string(&doc).expect("json")).expect("write");
    let loaded = bulkhead_api::load_paths(&[&file]);
    let _ = std::fs::remove_dir_all(&dir);
    let loaded = loaded.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        loaded[0]
            .resource
            .meta()
            .annotations
            .get("note")
            .map(String::as_str),
        Some(note)
    );
}
