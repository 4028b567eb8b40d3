//! Two node sandboxes with their own agents, four workloads, and a policy change while a
//! probe loop runs: once both agents' apply calls have returned, no connection between
//! the newly denied pair succeeds and the newly allowed pair connects.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bulkhead_agent::{Agent, AgentConfig, Metrics, Step};
use bulkhead_netns::{
    Cidr, Endpoint, NodeSandbox, Service, VethEnd, tcp_connect, unique_name, veth_pair,
};

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn wep(name: &str, node: &str, endpoint: &Endpoint) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {{name: {name}, namespace: shop, labels: {{app: {name}}}}}\nspec: {{node: {node}, interfaceName: {}, ipNetworks: [{}/32]}}\n",
        endpoint.host_ifname(),
        endpoint.ipv4()
    )
}

fn d_accepts_from(app: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: guard-d}}\nspec:\n  selector: app == 'd'\n  ingress: [{{action: Allow, protocol: TCP, source: {{selector: app == '{app}'}}}}]\n"
    )
}

fn ip(s: &str) -> std::net::Ipv4Addr {
    s.parse().expect("test address")
}

/// One probe's record: which pair, when it started, whether it connected.
struct Record {
    pair: &'static str,
    started: Instant,
    connected: bool,
}

#[test]
fn a_policy_change_is_enforced_when_apply_returns() {
    if bulkhead_netns::preflight().is_err() {
        eprintln!("skipped: needs root, ip netns and nft");
        return;
    }
    let n1 = NodeSandbox::new(&unique_name("n1")).expect("node 1");
    let n2 = NodeSandbox::new(&unique_name("n2")).expect("node 2");
    veth_pair(
        &VethEnd::new(n1.netns(), "to-n2")
            .address(Cidr::new(ip("10.66.255.1").into(), 30).expect("cidr"))
            .route(
                Cidr::new(ip("10.65.2.0").into(), 24).expect("cidr"),
                Some(ip("10.66.255.2").into()),
            ),
        &VethEnd::new(n2.netns(), "to-n1")
            .address(Cidr::new(ip("10.66.255.2").into(), 30).expect("cidr"))
            .route(
                Cidr::new(ip("10.65.1.0").into(), 24).expect("cidr"),
                Some(ip("10.66.255.1").into()),
            ),
    )
    .expect("link the nodes");
    let a = n1.add_workload("a", ip("10.65.1.1"), None).expect("a");
    let b = n1.add_workload("b", ip("10.65.1.2"), None).expect("b");
    let c = n2.add_workload("c", ip("10.65.2.1"), None).expect("c");
    let d = n2.add_workload("d", ip("10.65.2.2"), None).expect("d");
    d.netns().serve(&[Service::Tcp(80)]).expect("server on d");

    let base = std::env::temp_dir().join(format!("bulkhead-two-nodes-{}", std::process::id()));
    let dir = TempDir(base.clone());
    let resources = base.join("resources");
    std::fs::create_dir_all(&resources).expect("dir");
    for (name, node, ep) in [
        ("a", "n1", &a),
        ("b", "n1", &b),
        ("c", "n2", &c),
        ("d", "n2", &d),
    ] {
        std::fs::write(resources.join(format!("{name}.yaml")), wep(name, node, ep)).expect("write");
    }
    std::fs::write(resources.join("policy.yaml"), d_accepts_from("a")).expect("write");
    let agent = |node: &str, sandbox: &NodeSandbox| {
        let config = AgentConfig {
            state_dir: Some(base.join(format!("state-{node}"))),
            poll: Duration::from_millis(20),
            resync: Duration::from_secs(3600),
            ..AgentConfig::for_sandbox(node, sandbox.name(), &resources)
        };
        Agent::new(config, Arc::new(Metrics::default()))
    };
    let mut agent1 = agent("n1", &n1);
    let mut agent2 = agent("n2", &n2);
    assert_eq!(agent1.step(), Step::Applied);
    assert_eq!(agent2.step(), Step::Applied);

    let d_ip: IpAddr = d.ipv4().into();
    let records = Mutex::new(Vec::<Record>::new());
    let stop = AtomicBool::new(false);
    let changed_at = Mutex::new(None::<Instant>);
    std::thread::scope(|s| {
        for (pair, from) in [("a->d", &a), ("b->d", &b), ("c->d", &c)] {
            let (records, stop) = (&records, &stop);
            s.spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(20);
                for _ in 0..1000 {
                    if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                        break;
                    }
                    let started = Instant::now();
                    let connected = tcp_connect(from.netns(), d_ip, 80, Duration::from_millis(300));
                    if let Ok(mut r) = records.lock() {
                        r.push(Record {
                            pair,
                            started,
                            connected,
                        });
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            });
        }
        // Let the loop observe the first policy, then flip it.
        std::thread::sleep(Duration::from_millis(800));
        std::fs::write(resources.join("policy.yaml"), d_accepts_from("b")).expect("write");
        // guard-d selects only d: node 1's table does not change, node 2's does.
        let step1 = agent1.step();
        let step2 = agent2.step();
        *changed_at.lock().expect("lock") = Some(Instant::now());
        assert_eq!(step1, Step::Unchanged);
        assert_eq!(step2, Step::Applied);
        std::thread::sleep(Duration::from_millis(1200));
        stop.store(true, Ordering::Relaxed);
    });
    let changed = changed_at
        .into_inner()
        .expect("lock")
        .expect("the change happened");
    let records = records.into_inner().expect("lock");
    let before = |pair: &'static str| {
        records
            .iter()
            .filter(move |r| r.pair == pair && r.started < changed)
    };
    let after = |pair: &'static str| {
        records
            .iter()
            .filter(move |r| r.pair == pair && r.started >= changed)
    };
    assert!(
        before("a->d").any(|r| r.connected),
        "a reached d under the first policy"
    );
    assert!(
        before("b->d").all(|r| !r.connected),
        "b never reached d under the first policy"
    );
    assert!(
        after("a->d").count() > 0 && after("b->d").count() > 0,
        "probes ran after the change"
    );
    assert!(
        after("a->d").all(|r| !r.connected),
        "a newly denied: no connection after apply returned"
    );
    assert!(
        after("b->d").all(|r| r.connected),
        "b newly allowed: every probe after apply connected"
    );
    assert!(
        records.iter().all(|r| !(r.pair == "c->d" && r.connected)),
        "c was never allowed"
    );
    // The agents write their caches when they end: before the directory goes.
    drop(agent1);
    drop(agent2);
    drop(dir);
}
