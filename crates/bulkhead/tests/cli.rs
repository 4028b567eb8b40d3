//! The command line, run as a user runs it.

use std::path::PathBuf;
use std::process::{Command, Output};

fn bulkhead(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bulkhead"))
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("the bulkhead binary runs")
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn check_explains_the_brief_dns_exception() {
    let o = bulkhead(&[
        "check",
        "-f",
        "examples/brief",
        "--from",
        "shop/frontend",
        "--to",
        "kube-system/coredns",
        "--port",
        "53",
        "--protocol",
        "UDP",
    ]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert!(text.contains("Verdict: ALLOW"), "{text}");
    assert!(
        text.contains("GlobalNetworkPolicy deny-app-policy: rule 0 matched"),
        "{text}"
    );
    assert!(text.contains("profile kns.kube-system rule 0"), "{text}");
}

#[test]
fn check_explains_the_brief_default_deny_between_pods() {
    let o = bulkhead(&[
        "check",
        "-f",
        "examples/brief",
        "--from",
        "shop/frontend",
        "--to",
        "shop/backend",
        "--port",
        "8080",
    ]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(text.contains("Verdict: DENY"), "{text}");
    assert!(
        text.contains("Decided by: egress of shop/frontend: tier default, end of tier"),
        "{text}"
    );
}

#[test]
fn check_json_carries_the_trace() {
    let o = bulkhead(&[
        "check",
        "-f",
        "examples/brief",
        "--from",
        "shop/frontend",
        "--to",
        "shop/backend",
        "--port",
        "8080",
        "-o",
        "json",
    ]);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON output");
    assert_eq!(doc["verdict"], "deny");
    assert_eq!(doc["trace"][0], "0|default|gnp:deny-app-policy|deny|-1");
}

#[test]
fn check_reports_bad_input_precisely_and_exits_2() {
    let dir = tempdir("bad-input");
    let file = dir.join("bad.yaml");
    std::fs::write(
        &file,
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec:\n  selector: app = 'x'\n",
    )
    .expect("write temp file");
    let o = bulkhead(&[
        "check",
        "-f",
        file.to_str().expect("utf-8 path"),
        "--from",
        "10.0.0.1",
        "--to",
        "10.0.0.2",
        "--port",
        "1",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("document 1 (line 5): spec.selector"), "{err}");
    assert!(err.contains("col 5: expected =="), "{err}");
}

#[test]
fn check_rejects_unknown_endpoints() {
    let o = bulkhead(&[
        "check",
        "-f",
        "examples/brief",
        "--from",
        "shop/nope",
        "--to",
        "10.0.0.1",
        "--port",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no pod or WorkloadEndpoint shop/nope"));
}

#[test]
fn check_follows_a_forwarded_flow_through_host_endpoints() {
    let dir = tempdir("forwarded");
    let file = dir.join("gateway.yaml");
    std::fs::write(
        &file,
        "apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata: {name: gw-eth0, labels: {side: outside}}\nspec: {node: gw, interfaceName: eth0}\n---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: outside-in}\nspec:\n  selector: side == 'outside'\n  applyOnForward: true\n  ingress: [{action: Allow, protocol: TCP, destination: {ports: [443]}}]\n",
    )
    .expect("write temp file");
    let path = file.to_str().expect("utf-8 path");
    let check = |port: &str, via: &[&str]| {
        let mut args = vec![
            "check",
            "-f",
            path,
            "--from",
            "198.18.0.1",
            "--to",
            "198.19.0.1",
            "--port",
            port,
        ];
        args.extend(via);
        bulkhead(&args)
    };
    let o = check("22", &["--in-via", "gw-eth0"]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.contains("Forwarded: in through host/gw-eth0"),
        "{text}"
    );
    assert!(
        text.contains("Decided by: forwarding in through host/gw-eth0: tier default, end of tier"),
        "{text}"
    );
    assert_eq!(
        check("443", &["--in-via", "gw-eth0"]).status.code(),
        Some(0)
    );
    let o = check("22", &["--in-via", "gw-eth0", "-o", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON output");
    assert_eq!(doc["flow"]["inVia"], "gw-eth0");
    assert_eq!(
        doc["decision"]["enforced"]["forwardedIn"]["verdict"], "deny",
        "{doc}"
    );
    assert_eq!(doc["trace"][0], "0|default|gnp:outside-in|deny|-1");
    // A flow to a workload on the gateway, asked about without --in-via, gets a hint.
    let pod = dir.join("pod.yaml");
    std::fs::write(
        &pod,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: web}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: app, namespace: web}\nspec: {nodeName: gw}\nstatus: {podIP: 10.65.0.7}\n",
    )
    .expect("write temp file");
    let o = bulkhead(&[
        "check",
        "-f",
        path,
        "-f",
        pod.to_str().expect("utf-8 path"),
        "--from",
        "198.18.0.1",
        "--to",
        "web/app",
        "--port",
        "22",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("hint: if the flow comes in through host endpoint gw-eth0 of node gw")
            && err.contains("add --in-via gw-eth0"),
        "{err}"
    );
    // Not forwarded through it: neither end is an endpoint, nothing applies.
    assert_eq!(check("22", &[]).status.code(), Some(0));
    let o = check("22", &["--out-via", "gw-eth9"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no HostEndpoint is named \"gw-eth9\""),
        "{err}"
    );
}

#[test]
fn conformance_run_passes_and_fails_own_cases() {
    let dir = tempdir("cases");
    let case = |verdict: &str| {
        format!(
            "schema: netpol-case/v1\nid: own/deny-{verdict}\ntags: [own]\nmodel:\n  namespaces: [{{name: x}}]\n  pods: [{{name: x/a, labels: {{app: a}}}}, {{name: x/b}}]\nsteps:\n  - apply: |\n      apiVersion: networking.k8s.io/v1\n      kind: NetworkPolicy\n      metadata: {{name: deny, namespace: x}}\n      spec: {{podSelector: {{matchLabels: {{app: a}}}}}}\n    probes: [{{port: 80}}]\n    expect:\n      default: allow\n      overrides: [{{from: '*', to: x/a, verdict: {verdict}}}]\n"
        )
    };
    std::fs::write(dir.join("good.yaml"), case("deny")).expect("write case");
    std::fs::write(dir.join("bad.yaml"), case("allow")).expect("write case");
    let o = bulkhead(&["conformance", "run", dir.to_str().expect("utf-8 path")]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(text.contains("PASS own/deny-deny"), "{text}");
    assert!(
        text.contains("FAIL own/deny-allow: step 1: x/b -> x/a TCP/80: expected allow, got deny"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("1 passed, 1 failed"), "{text}");
}

/// A temporary directory removed when dropped.
struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir(name: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("bulkhead-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    TempDir(dir)
}

#[test]
fn node_del_of_an_unknown_node_says_so() {
    let o = bulkhead(&["node", "del", "bh-no-such-node-sandbox"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("there is no node sandbox bh-no-such-node-sandbox"),
        "{err}"
    );
}

/// `bulkhead check -f file --from from --to to --port port` and `extra` arguments.
fn check_flow(
    file: &std::path::Path,
    from: &str,
    to: &str,
    port: u16,
    extra: &[&str],
) -> std::process::Output {
    let port = port.to_string();
    let mut args = vec![
        "check",
        "-f",
        file.to_str().expect("utf-8 path"),
        "--from",
        from,
        "--to",
        to,
        "--port",
        &port,
    ];
    args.extend(extra);
    bulkhead(&args)
}

#[test]
fn check_takes_the_nodes_failsafe_ports() {
    let dir = std::env::temp_dir().join(format!("bulkhead-cli-failsafe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("hep.yaml");
    std::fs::write(
        &file,
        "apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata: {name: h1}\nspec: {node: n1, interfaceName: eth0, expectedIPs: [10.66.0.1]}\n",
    )
    .expect("write");
    let check = |extra: &[&str]| check_flow(&file, "198.18.0.1", "host/h1", 22, extra);
    let o = check(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("failsafe port"), "{}", stdout(&o));
    let o = check(&["--failsafe-inbound", "none"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let o = check(&["--failsafe-inbound", "tcp:10.0.0.0/33:22"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--failsafe-inbound") && err.contains("not a CIDR"),
        "{err}"
    );
    // Open to the source's net only.
    let o = check(&["--failsafe-inbound", "tcp:198.18.0.0/24:22"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let o = check(&["--failsafe-inbound", "tcp:203.0.113.0/24:22"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_takes_the_nodes_default_endpoint_to_host_action() {
    let dir = std::env::temp_dir().join(format!("bulkhead-cli-to-host-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("node.yaml");
    std::fs::write(
        &file,
        "apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata: {name: h1}\nspec: {node: n1, interfaceName: eth0, expectedIPs: [10.66.0.1]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop}\nspec: {nodeName: n1}\nstatus: {podIP: 10.65.0.5}\n",
    )
    .expect("write");
    let check = |extra: &[&str]| check_flow(&file, "shop/web", "host/h1", 10250, extra);
    let o = check(&[]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "Accept by default: {}",
        stdout(&o)
    );
    let o = check(&["--default-endpoint-to-host-action", "Drop"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("DefaultEndpointToHostAction is Drop"),
        "{}",
        stdout(&o)
    );
    let o = check(&["--default-endpoint-to-host-action", "reject"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("expected Drop, Return or Accept"), "{err}");
    // The node's own FelixConfiguration says Drop; the flag still wins over it.
    std::fs::write(
        dir.join("felix.yaml"),
        "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: node.n1}\nspec: {defaultEndpointToHostAction: Drop}\n",
    )
    .expect("write");
    let with_felix = |extra: &[&str]| {
        let felix = dir.join("felix.yaml");
        let mut args = vec!["-f", felix.to_str().expect("utf-8 path")];
        args.extend(extra);
        check(&args)
    };
    let o = with_felix(&[]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let o = with_felix(&["--default-endpoint-to-host-action", "Accept"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_knows_a_nodes_own_addresses_from_its_node_resource() {
    let dir = std::env::temp_dir().join(format!("bulkhead-cli-node-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("node.yaml");
    // No host endpoint: only the Node says 10.66.1.1 is n1's. The pod takes pods only.
    std::fs::write(
        &file,
        "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: n1}\nspec: {bgp: {ipv4Address: 10.66.1.1/24}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop, labels: {app: web}}\nspec: {nodeName: n1}\nstatus: {podIP: 10.65.0.5}\n---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: web}\nspec: {selector: app == 'web', ingress: [{action: Allow, source: {nets: [10.65.0.0/16]}}], egress: [{action: Allow}]}\n",
    )
    .expect("write");
    // The node reaches its pod whatever the pod's ingress says, and is named as the node.
    let o = check_flow(&file, "10.66.1.1", "shop/web", 80, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(
        stdout(&o).starts_with("Flow: node n1 (10.66.1.1) -> shop/web"),
        "{}",
        stdout(&o)
    );
    // Another address is anyone else.
    let o = check_flow(&file, "10.66.1.2", "shop/web", 80, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    // With Drop, the pod does not reach its node.
    let o = check_flow(
        &file,
        "shop/web",
        "10.66.1.1",
        10250,
        &["--default-endpoint-to-host-action", "Drop"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("then to its own host, node n1: DefaultEndpointToHostAction is Drop"),
        "{}",
        stdout(&o)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
