//! The agent against a real node sandbox: it enforces, repairs tampering, restores from
//! its cache after a restart, and never lets bad resources reach the kernel.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bulkhead_agent::{Agent, AgentConfig, Metrics, Step};
use bulkhead_netns::{Endpoint, NodeSandbox, Service, tcp_connect, unique_name};

const PROBE: Duration = Duration::from_millis(500);

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir(tag: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("bulkhead-agent-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    TempDir(dir)
}

fn wep(name: &str, app: &str, endpoint: &Endpoint) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {{name: {name}, namespace: shop, labels: {{app: {app}}}}}\nspec: {{node: node1, interfaceName: {}, ipNetworks: [{}/32]}}\n",
        endpoint.host_ifname(),
        endpoint.ipv4()
    )
}

const DENY_TO_B: &str = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: isolate-b}\nspec: {selector: app == 'b', types: [Ingress]}\n";

struct Setup {
    node: NodeSandbox,
    a: Endpoint,
    b: Endpoint,
    resources: TempDir,
    state: TempDir,
}

fn setup(tag: &str) -> Option<Setup> {
    if bulkhead_netns::preflight().is_err() {
        eprintln!("skipped: needs root, ip netns and nft");
        return None;
    }
    let node = NodeSandbox::new(&unique_name(tag)).expect("node sandbox");
    let a = node
        .add_workload("a", "10.65.0.1".parse().expect("ip"), None)
        .expect("workload a");
    let b = node
        .add_workload("b", "10.65.0.2".parse().expect("ip"), None)
        .expect("workload b");
    b.netns().serve(&[Service::Tcp(80)]).expect("server on b");
    let resources = tempdir(&format!("{tag}-res"));
    std::fs::write(resources.0.join("a.yaml"), wep("a", "a", &a)).expect("write");
    std::fs::write(resources.0.join("b.yaml"), wep("b", "b", &b)).expect("write");
    let state = tempdir(&format!("{tag}-state"));
    Some(Setup {
        node,
        a,
        b,
        resources,
        state,
    })
}

fn start_agent(s: &Setup) -> (Agent, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::default());
    let config = AgentConfig {
        state_dir: Some(s.state.0.clone()),
        resync: Duration::from_secs(3600),
        ..AgentConfig::for_sandbox("node1", s.node.name(), &s.resources.0)
    };
    (Agent::new(config, Arc::clone(&metrics)), metrics)
}

fn a_reaches_b(s: &Setup) -> bool {
    let b: IpAddr = s.b.ipv4().into();
    tcp_connect(s.a.netns(), b, 80, PROBE)
}

fn flush_ruleset(s: &Setup) {
    s.node
        .netns()
        .exec_ok("nft", ["flush", "ruleset"])
        .expect("nft flush ruleset");
}

#[test]
fn enforces_repairs_tampering_and_restores_after_restart() {
    let Some(s) = setup("agent") else { return };
    let (mut agent, metrics) = start_agent(&s);
    assert_eq!(agent.step(), Step::Applied);
    assert!(a_reaches_b(&s), "no policy: open");

    std::fs::write(s.resources.0.join("policy.yaml"), DENY_TO_B).expect("write policy");
    assert_eq!(agent.step(), Step::Applied);
    assert!(!a_reaches_b(&s), "policy enforced");

    // Tampering: someone flushes the ruleset. The read-back sees it and repairs.
    flush_ruleset(&s);
    assert!(a_reaches_b(&s), "the flush really opened the path");
    assert!(matches!(agent.check_drift(), Step::Repaired(_)));
    assert_eq!(metrics.drift_repairs(), 1);
    assert!(!a_reaches_b(&s), "rules are back");
    assert!(
        metrics
            .render()
            .contains("bulkhead_agent_drift_repairs_total 1")
    );

    // Quiet: nothing committed since the repair, so nothing is listed or repaired; the
    // first check reads the table back once, as the reference for later ones.
    assert_eq!(agent.check_drift(), Step::Idle);
    assert_eq!(agent.check_drift(), Step::Idle);
    // Another table of the namespace changes: the generation moves, ours is intact.
    s.node
        .netns()
        .exec_ok("nft", ["add", "table", "inet", "someone_else"])
        .expect("another table");
    assert_eq!(agent.check_drift(), Step::Idle);
    // A change inside Bulkhead's table, however harmless, is tampering.
    s.node
        .netns()
        .exec_ok(
            "nft",
            ["insert", "rule", "inet", "bulkhead", "forward", "counter"],
        )
        .expect("a foreign rule");
    assert!(matches!(agent.check_drift(), Step::Repaired(_)));
    assert_eq!(metrics.drift_repairs(), 2);
    assert!(!a_reaches_b(&s));

    // Restart: a new agent restores the cached rules before it reads any resource.
    drop(agent);
    flush_ruleset(&s);
    let (mut restarted, _) = start_agent(&s);
    assert_eq!(restarted.restore(), Ok(true));
    assert!(!a_reaches_b(&s), "restored from the cache");
    assert!(matches!(restarted.step(), Step::Unchanged | Step::Applied));
    assert!(!a_reaches_b(&s));
}

#[test]
fn bad_resources_never_reach_the_kernel() {
    let Some(s) = setup("agentbad") else { return };
    let (mut agent, metrics) = start_agent(&s);
    std::fs::write(s.resources.0.join("policy.yaml"), DENY_TO_B).expect("write policy");
    assert_eq!(agent.step(), Step::Applied);
    assert!(!a_reaches_b(&s));
    // An invalid edit: the whole load is rejected and the last good state stays.
    std::fs::write(
        s.resources.0.join("policy.yaml"),
        DENY_TO_B.replace("app == 'b'", "app = 'b'"),
    )
    .expect("write bad policy");
    assert!(matches!(agent.step(), Step::LoadFailed(m) if m.contains("spec.selector")));
    assert!(!a_reaches_b(&s), "still enforced");
    assert!(
        metrics
            .render()
            .contains("bulkhead_agent_load_errors_total 1")
    );
    // A policy in a tier that does not exist is a model error: also kept out.
    std::fs::write(
        s.resources.0.join("policy.yaml"),
        DENY_TO_B.replace("types:", "tier: nope, types:"),
    )
    .expect("write");
    assert!(matches!(agent.step(), Step::LoadFailed(m) if m.contains("nope")));
    assert!(!a_reaches_b(&s));
}
