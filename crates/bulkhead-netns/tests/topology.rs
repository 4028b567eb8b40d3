//! Real packets through a node sandbox: workloads, peers, nftables in the node.
//! Needs root; skips (passes with a message) otherwise.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bulkhead_netns::nft::{self, Family};
use bulkhead_netns::{
    BatchOptions, EndpointKind, NodeSandbox, Outcome, Probe, Service, icmp_echo, run_batch,
    run_batch_outcomes, tcp_connect, udp_request, unique_name,
};

const T: Duration = Duration::from_millis(500);

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

fn v6(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ip6(s: &str) -> Option<Ipv6Addr> {
    Some(s.parse().unwrap())
}

#[test]
fn workloads_reach_each_other_over_v4_and_v6() {
    if !common::capable() {
        return;
    }
    let node = NodeSandbox::new(&unique_name("wl")).unwrap();
    let w1 = node
        .add_workload("w1", Ipv4Addr::new(10, 65, 0, 1), ip6("fd65::1"))
        .unwrap();
    let w2 = node
        .add_workload("w2", Ipv4Addr::new(10, 65, 0, 2), ip6("fd65::2"))
        .unwrap();
    assert_eq!(w1.netns().name(), format!("{}-w1", node.name()));
    assert!(w1.host_ifname().starts_with("cali") && w1.host_ifname().len() == 15);
    let links = node.netns().ip(["-o", "link"]).unwrap();
    assert!(links.contains(w1.host_ifname()) && links.contains(w2.host_ifname()));

    w2.netns()
        .serve(&[Service::Tcp(8080), Service::Udp(5353)])
        .unwrap();
    w1.netns().serve(&[Service::Tcp(80)]).unwrap();

    let (a, b) = (w1.netns(), w2.netns());
    let probes = [
        Probe::tcp(a, v4(10, 65, 0, 2), 8080),
        Probe::tcp(a, v6("fd65::2"), 8080),
        Probe::udp(a, v4(10, 65, 0, 2), 5353),
        Probe::udp(a, v6("fd65::2"), 5353),
        Probe::icmp(a, v4(10, 65, 0, 2)),
        Probe::icmp(a, v6("fd65::2")),
        Probe::tcp(b, v4(10, 65, 0, 1), 80),
        Probe::tcp(b, v6("fd65::1"), 80),
        Probe::icmp(b, v6("fd65::1")),
        // Negative: nothing listens there; the workload answers RST / port unreachable.
        Probe::tcp(a, v4(10, 65, 0, 2), 8081),
        Probe::udp(a, v6("fd65::2"), 5354),
        // Nobody has this address: the node has no route and says so.
        Probe::tcp(a, v4(10, 65, 0, 99), 80),
    ];
    let started = Instant::now();
    let outcomes = run_batch_outcomes(&probes, &BatchOptions::default());
    let elapsed = started.elapsed();
    let mut expected = vec![Outcome::Reached; 9];
    expected.extend([Outcome::Refused, Outcome::Refused, Outcome::Unreachable]);
    assert_eq!(outcomes, expected);
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");

    // The one-probe API.
    assert!(tcp_connect(a, v4(10, 65, 0, 2), 8080, T));
    assert!(udp_request(a, v6("fd65::2"), 5353, T));
    assert!(icmp_echo(b, v4(10, 65, 0, 1), T));
    assert!(!udp_request(a, v4(10, 65, 0, 2), 5354, T));
    // The node's own gateway address answers too (INPUT path).
    assert!(icmp_echo(a, v4(169, 254, 1, 1), T));

    // Stopping servers closes their ports.
    w2.netns().stop_servers();
    assert!(!tcp_connect(a, v4(10, 65, 0, 2), 8080, T));
}

/// A process being spawned holds copies of the parent's descriptors until it execs, the
/// listening sockets of servers included. Stopping a server must end its port even then:
/// no connection after the stop, and the port can be served again at once.
#[test]
fn stopping_a_server_is_final_while_other_threads_spawn_processes() {
    if !common::capable() {
        return;
    }
    let node = NodeSandbox::new(&unique_name("stop")).unwrap();
    let w1 = node
        .add_workload("w1", Ipv4Addr::new(10, 65, 0, 1), None)
        .unwrap();
    let w2 = node
        .add_workload("w2", Ipv4Addr::new(10, 65, 0, 2), None)
        .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let spawner = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            // Bounded: at most 20,000 short-lived children, each reaped.
            for _ in 0..20_000 {
                if done.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(mut child) = std::process::Command::new("true").spawn() {
                    let _ = child.wait();
                }
            }
        })
    };
    let mut reached = 0;
    for _ in 0..200 {
        w2.netns()
            .serve(&[Service::Tcp(8080)])
            .expect("the port is free again once the server stopped");
        w2.netns().stop_servers();
        if tcp_connect(w1.netns(), v4(10, 65, 0, 2), 8080, T) {
            reached += 1;
        }
    }
    done.store(true, Ordering::Relaxed);
    spawner.join().unwrap();
    assert_eq!(reached, 0, "connections after the server stopped");
}

#[test]
fn nft_drop_in_node_forward_blocks_one_port_only() {
    if !common::capable() {
        return;
    }
    let node = NodeSandbox::new(&unique_name("nft")).unwrap();
    let w1 = node
        .add_workload("w1", Ipv4Addr::new(10, 65, 1, 1), ip6("fd65::1:1"))
        .unwrap();
    let w2 = node
        .add_workload("w2", Ipv4Addr::new(10, 65, 1, 2), ip6("fd65::1:2"))
        .unwrap();
    w2.netns()
        .serve(&[Service::Tcp(8080), Service::Tcp(9090)])
        .unwrap();
    let a = w1.netns();
    let probe_all = || {
        let t = Duration::from_millis(300);
        let probes = [
            Probe::tcp(a, v4(10, 65, 1, 2), 8080).with_timeout(t),
            Probe::tcp(a, v6("fd65::1:2"), 8080).with_timeout(t),
            Probe::tcp(a, v4(10, 65, 1, 2), 9090).with_timeout(t),
            Probe::tcp(a, v6("fd65::1:2"), 9090).with_timeout(t),
        ];
        run_batch(&probes, &BatchOptions::default())
    };
    assert_eq!(probe_all(), [true, true, true, true]);

    let script = "\
table inet bhtest {
  chain forward {
    type filter hook forward priority filter; policy accept;
    tcp dport 9090 counter drop
  }
}
";
    nft::check(node.netns(), script).unwrap();
    nft::apply(node.netns(), script).unwrap();
    assert_eq!(probe_all(), [true, true, false, false]);

    let json = nft::list_table_json(node.netns(), Family::Inet, "bhtest").unwrap();
    assert!(json.starts_with("{\"nftables\""), "{json}");
    assert!(json.contains("\"bhtest\""), "{json}");
    let text = nft::list_table(node.netns(), Family::Inet, "bhtest").unwrap();
    assert!(text.contains("tcp dport 9090 counter packets"), "{text}");
    // The root namespace never sees the table.
    assert!(
        nft::version(node.netns())
            .unwrap()
            .starts_with("nftables v")
    );

    // nft 1.0.6's one-line trap: rejected, nothing applied, stderr in the error.
    let err = nft::apply(
        node.netns(),
        "table inet bad { chain c { counter accept } }\n",
    )
    .unwrap_err();
    match &err {
        bulkhead_netns::Error::Nft { stderr, .. } => {
            assert!(stderr.contains("syntax error"), "{stderr}")
        }
        other => panic!("unexpected error {other}"),
    }
    assert!(nft::list_table(node.netns(), Family::Inet, "bad").is_err());

    // Deleting the table (idempotently) lets 9090 through again.
    nft::delete_table(node.netns(), Family::Inet, "bhtest").unwrap();
    nft::delete_table(node.netns(), Family::Inet, "bhtest").unwrap();
    assert_eq!(probe_all(), [true, true, true, true]);
}

#[test]
fn externals_and_hosts_reach_workloads_through_the_node() {
    if !common::capable() {
        return;
    }
    let node = NodeSandbox::new(&unique_name("ext")).unwrap();
    let w = node
        .add_workload("web", Ipv4Addr::new(10, 65, 2, 1), ip6("fd65::2:1"))
        .unwrap();
    let ext = node
        .add_peer(
            EndpointKind::External,
            "internet",
            Ipv4Addr::new(198, 18, 0, 10),
            ip6("2001:2::10"),
        )
        .unwrap();
    let host = node
        .add_peer(
            EndpointKind::Host,
            "node2",
            Ipv4Addr::new(10, 66, 0, 2),
            None,
        )
        .unwrap();
    assert!(ext.host_ifname().starts_with("ext"));
    assert!(host.host_ifname().starts_with("hst"));
    w.netns()
        .serve(&[Service::Tcp(80), Service::Udp(53)])
        .unwrap();
    ext.netns().serve(&[Service::Udp(53)]).unwrap();
    // A second external address in the same namespace.
    node.add_endpoint_address(&ext, v4(198, 19, 0, 5)).unwrap();
    assert_eq!(ext.addresses().len(), 3);
    // An address of the node itself.
    node.add_local_address(v4(10, 66, 0, 1)).unwrap();

    let (x, h, wl) = (ext.netns(), host.netns(), w.netns());
    let probes = [
        Probe::tcp(x, v4(10, 65, 2, 1), 80),
        Probe::tcp(x, v6("fd65::2:1"), 80),
        Probe::udp(x, v4(10, 65, 2, 1), 53),
        Probe::icmp(x, v6("fd65::2:1")),
        Probe::tcp(x, v4(10, 65, 2, 1), 80).with_source(v4(198, 19, 0, 5)),
        Probe::tcp(h, v4(10, 65, 2, 1), 80),
        Probe::icmp(h, v4(10, 65, 2, 1)),
        Probe::udp(wl, v4(198, 18, 0, 10), 53),
        Probe::udp(wl, v4(198, 19, 0, 5), 53),
        Probe::icmp(wl, v4(10, 66, 0, 2)),
        Probe::icmp(wl, v4(10, 66, 0, 1)),
    ];
    let outcomes = run_batch_outcomes(&probes, &BatchOptions::default());
    assert!(outcomes.iter().all(Outcome::reached), "{outcomes:?}");

    // Filter one source address in the node: only that probe fails.
    nft::apply(
        node.netns(),
        "table inet bhtest {\n  chain forward {\n    type filter hook forward priority filter; policy accept;\n    ip saddr 198.19.0.5 drop\n  }\n}\n",
    )
    .unwrap();
    let t = Duration::from_millis(300);
    let outcomes = run_batch_outcomes(
        &[
            Probe::tcp(x, v4(10, 65, 2, 1), 80).with_timeout(t),
            Probe::tcp(x, v4(10, 65, 2, 1), 80)
                .with_source(v4(198, 19, 0, 5))
                .with_timeout(t),
        ],
        &BatchOptions::default(),
    );
    assert_eq!(outcomes, [Outcome::Reached, Outcome::TimedOut]);
}

#[test]
fn batch_respects_parallelism_and_deadline() {
    if !common::capable() {
        return;
    }
    let node = NodeSandbox::new(&unique_name("dl")).unwrap();
    let w1 = node
        .add_workload("w1", Ipv4Addr::new(10, 65, 3, 1), None)
        .unwrap();
    let _w2 = node
        .add_workload("w2", Ipv4Addr::new(10, 65, 3, 2), None)
        .unwrap();
    nft::apply(
        node.netns(),
        "table inet bhtest {\n  chain forward {\n    type filter hook forward priority filter; policy drop;\n  }\n}\n",
    )
    .unwrap();
    let probes: Vec<Probe<'_>> = (0..20)
        .map(|i| {
            Probe::tcp(w1.netns(), v4(10, 65, 3, 2), 1000 + i).with_timeout(Duration::from_secs(5))
        })
        .collect();
    let started = Instant::now();
    let outcomes = run_batch_outcomes(
        &probes,
        &BatchOptions {
            parallelism: 4,
            deadline: Duration::from_millis(400),
        },
    );
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_millis(1200), "{elapsed:?}");
    assert!(outcomes.iter().all(|o| !o.reached()));
    let timed_out = outcomes.iter().filter(|o| **o == Outcome::TimedOut).count();
    let not_run = outcomes.iter().filter(|o| **o == Outcome::NotRun).count();
    assert_eq!(timed_out + not_run, 20, "{outcomes:?}");
    assert!(timed_out >= 4 && not_run >= 8, "{outcomes:?}");

    // A hundred probes, half of them dropped, finish in about one timeout.
    nft::apply(
        node.netns(),
        "flush table inet bhtest\ntable inet bhtest {\n  chain forward {\n    type filter hook forward priority filter; policy accept;\n    tcp dport 9 drop\n  }\n}\n",
    )
    .unwrap();
    _w2.netns().serve(&[Service::Tcp(7)]).unwrap();
    let t = Duration::from_millis(300);
    let probes: Vec<Probe<'_>> = (0..100)
        .map(|i| {
            Probe::tcp(w1.netns(), v4(10, 65, 3, 2), if i % 2 == 0 { 7 } else { 9 }).with_timeout(t)
        })
        .collect();
    let started = Instant::now();
    let results = run_batch(&probes, &BatchOptions::default());
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    for (i, r) in results.iter().enumerate() {
        assert_eq!(*r, i % 2 == 0, "probe {i}");
    }
}

#[test]
fn sctp_is_detected_and_reported() {
    if !common::capable() {
        return;
    }
    let node = NodeSandbox::new(&unique_name("sctp")).unwrap();
    let w = node
        .add_workload("w", Ipv4Addr::new(10, 65, 4, 1), None)
        .unwrap();
    let supported = bulkhead_netns::sctp_supported(w.netns());
    println!("SCTP sockets supported by this kernel: {supported}");
    let outcome = bulkhead_netns::probe(&Probe::new(
        w.netns(),
        bulkhead_netns::Protocol::Sctp,
        v4(169, 254, 1, 1),
        9,
    ));
    if supported {
        assert!(!outcome.reached());
    } else {
        assert!(matches!(outcome, Outcome::Unsupported(_)), "{outcome:?}");
    }
}

#[test]
fn flushing_conntrack_forgets_every_flow() {
    if !common::capable() {
        return;
    }
    let node = NodeSandbox::new(&unique_name("ct")).unwrap();
    // Nothing tracked yet (no conntrack hook in the namespace): nothing to do, no error.
    node.netns().flush_conntrack().unwrap();
    let w1 = node
        .add_workload("w1", Ipv4Addr::new(10, 65, 2, 1), None)
        .unwrap();
    let w2 = node
        .add_workload("w2", Ipv4Addr::new(10, 65, 2, 2), None)
        .unwrap();
    w2.netns().serve(&[Service::Udp(5353)]).unwrap();
    let script = "\
table inet bhct {
  chain forward {
    type filter hook forward priority filter; policy accept;
    ct state established accept
  }
}
";
    nft::apply(node.netns(), script).unwrap();
    let tracked = || -> u32 {
        node.netns()
            .exec_ok("cat", ["/proc/sys/net/netfilter/nf_conntrack_count"])
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let probe = [Probe::udp(w1.netns(), v4(10, 65, 2, 2), 5353).with_timeout(T)];
    assert_eq!(run_batch(&probe, &BatchOptions::default()), [true]);
    assert!(tracked() > 0);
    node.netns().flush_conntrack().unwrap();
    assert_eq!(tracked(), 0);
}
