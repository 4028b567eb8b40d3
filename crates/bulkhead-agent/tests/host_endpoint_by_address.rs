//! A HostEndpoint without `interfaceName` governs the interface that holds one of its
//! `expectedIPs`, as in Calico, and follows the address when it moves: the agent reads
//! the node's addresses and re-places the endpoint without any resource changing. The
//! running agent also takes a FelixConfiguration's failsafe ports, under its own flags.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bulkhead_agent::{Agent, AgentConfig, Metrics, Step};
use bulkhead_engine::failsafe::Failsafe;
use bulkhead_netns::{Endpoint, EndpointKind, NodeSandbox, Service, tcp_connect, unique_name};

const PROBE: Duration = Duration::from_millis(500);
/// The node's own address, served on port 80.
const NODE_IP: &str = "10.66.0.1";
/// The address the host endpoint expects; it sits on one of the node's interfaces.
const EXPECTED: &str = "10.66.9.1";

/// No profile and no policy: everything but the failsafe ports is denied on the
/// interface it governs.
const HEP: &str = "apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata: {name: uplink, labels: {role: uplink}}\nspec: {node: node1, expectedIPs: [10.66.9.1]}\n";

/// Felix's settings for every node: port 80 is the only inbound failsafe port, open to
/// the externals' net.
const FELIX: &str = "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: default}\nspec: {failsafeInboundHostPorts: [{protocol: TCP, port: 80, net: 198.18.0.0/24}]}\n";

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn reaches_node(from: &Endpoint) -> bool {
    let node: IpAddr = NODE_IP.parse().expect("ip");
    tcp_connect(from.netns(), node, 80, PROBE)
}

fn move_expected(node: &NodeSandbox, from: Option<&Endpoint>, to: Option<&Endpoint>) {
    if let Some(e) = from {
        node.netns()
            .ip([
                "addr",
                "del",
                &format!("{EXPECTED}/32"),
                "dev",
                e.host_ifname(),
            ])
            .expect("address removed");
    }
    if let Some(e) = to {
        node.netns()
            .ip([
                "addr",
                "add",
                &format!("{EXPECTED}/32"),
                "dev",
                e.host_ifname(),
            ])
            .expect("address added");
    }
}

/// Steps the agent until it programs a change, for at most five seconds: well under the
/// agent's resync of the addresses (30 s), so only the kernel's announcement of the
/// change can make it in time.
fn until_applied(agent: &mut Agent) -> Step {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let step = agent.step();
        if step != Step::Idle || Instant::now() > deadline {
            return step;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn follows_its_expected_address_from_interface_to_interface() {
    if bulkhead_netns::preflight().is_err() {
        eprintln!("skipped: needs root, ip netns and nft");
        return;
    }
    let node = NodeSandbox::new(&unique_name("hepip")).expect("node sandbox");
    node.add_local_address(NODE_IP.parse().expect("ip"))
        .expect("node address");
    node.netns().serve(&[Service::Tcp(80)]).expect("server");
    let peer = |id: &str, ip: &str| {
        node.add_peer(EndpointKind::External, id, ip.parse().expect("ip"), None)
            .expect("peer")
    };
    let (x1, x2) = (peer("x1", "198.18.0.1"), peer("x2", "198.18.0.2"));
    // Each interface keeps an address of its own: an interface that loses its last IPv4
    // address loses its routes too.
    for (e, own) in [(&x1, "10.66.1.1/32"), (&x2, "10.66.2.1/32")] {
        node.netns()
            .ip(["addr", "add", own, "dev", e.host_ifname()])
            .expect("own address");
    }
    move_expected(&node, None, Some(&x1));

    let dir = Dir(std::env::temp_dir().join(format!("bulkhead-hepip-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).expect("dir");
    std::fs::write(dir.0.join("hep.yaml"), HEP).expect("write");
    let config = AgentConfig {
        resync: Duration::from_secs(3600),
        ..AgentConfig::for_sandbox("node1", node.name(), &dir.0)
    };
    let metrics = Arc::new(Metrics::default());
    let mut agent = Agent::new(config.clone(), Arc::clone(&metrics));
    // What /metrics says of the placement.
    let governs = |e: &Endpoint| {
        metrics.render().contains(&format!(
            "bulkhead_agent_host_endpoint_interface{{host_endpoint=\"uplink\",interface=\"{}\"}} 1",
            e.host_ifname()
        ))
    };
    assert_eq!(agent.step(), Step::Applied);
    assert!(
        !reaches_node(&x1),
        "x1's interface holds the address: governed, denied"
    );
    assert!(
        reaches_node(&x2),
        "x2's interface is governed by no host endpoint"
    );
    assert!(governs(&x1) && !governs(&x2), "{}", metrics.render());

    // The address moves; no resource changes.
    move_expected(&node, Some(&x1), Some(&x2));
    assert_eq!(until_applied(&mut agent), Step::Applied);
    assert!(reaches_node(&x1), "x1's interface no longer holds it");
    assert!(!reaches_node(&x2), "x2's interface now does");
    assert!(!governs(&x1) && governs(&x2), "{}", metrics.render());

    // Gone from every interface: the endpoint governs nothing.
    move_expected(&node, Some(&x2), None);
    assert_eq!(until_applied(&mut agent), Step::Applied);
    assert!(reaches_node(&x1) && reaches_node(&x2), "nothing governed");
    assert!(!governs(&x1) && !governs(&x2), "{}", metrics.render());

    // Governed again. Then a FelixConfiguration makes the node's port 80 a failsafe
    // port, and the running agent takes it: it gets in before any policy (and without
    // one, as here).
    move_expected(&node, None, Some(&x1));
    assert_eq!(until_applied(&mut agent), Step::Applied);
    assert!(!reaches_node(&x1), "governed again");
    std::fs::write(dir.0.join("felix.yaml"), FELIX).expect("write");
    assert_eq!(until_applied(&mut agent), Step::Applied);
    assert!(reaches_node(&x1), "port 80 is a failsafe port now");

    // An agent whose flag sets the list wins over the FelixConfiguration: port 80 open
    // to x2's address only.
    drop(agent);
    let mut config = config;
    config.host_defaults.failsafe_inbound =
        Some(Failsafe::parse_ports("tcp:198.18.0.2/32:80").expect("valid"));
    let second = Arc::new(Metrics::default());
    let mut agent = Agent::new(config, Arc::clone(&second));
    assert_eq!(agent.step(), Step::Applied);
    let placed = format!(
        "host_endpoint=\"uplink\",interface=\"{}\"",
        x1.host_ifname()
    );
    assert!(second.render().contains(&placed), "{}", second.render());
    assert!(!reaches_node(&x1), "the flag opens port 80 to x2 only");
}
