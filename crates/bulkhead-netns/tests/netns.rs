//! `Netns` on its own: veth pairs, run_in, spawned processes, sysctls.
//! Needs root; skips (passes with a message) otherwise.

mod common;

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::time::Duration;

use bulkhead_netns::{
    Netns, Service, VethEnd, icmp_echo, tcp_connect, udp_request, unique_name, veth_pair,
};

const T: Duration = Duration::from_millis(500);

#[test]
fn veth_pair_run_in_and_sockets_keep_their_namespace() {
    if !common::capable() {
        return;
    }
    let a = Netns::create(&unique_name("a")).unwrap();
    let b = Netns::create(&unique_name("b")).unwrap();
    veth_pair(
        &VethEnd::new(&a, "va")
            .address("10.66.1.1/24".parse().unwrap())
            .address("fd66:1::1/64".parse().unwrap()),
        &VethEnd::new(&b, "vb")
            .address("10.66.1.2/24".parse().unwrap())
            .address("fd66:1::2/64".parse().unwrap())
            .route(
                "10.66.9.0/24".parse().unwrap(),
                Some("10.66.1.1".parse().unwrap()),
            ),
    )
    .unwrap();
    assert!(
        b.ip(["route"])
            .unwrap()
            .contains("10.66.9.0/24 via 10.66.1.1")
    );
    let b4: IpAddr = "10.66.1.2".parse().unwrap();
    let b6: IpAddr = "fd66:1::2".parse().unwrap();
    assert!(icmp_echo(&a, b4, T));
    assert!(icmp_echo(&a, b6, T));
    b.serve(&[Service::Udp(7000), Service::Tcp(7000)]).unwrap();
    assert!(udp_request(&a, b6, 7000, T));
    assert!(tcp_connect(&a, b4, 7000, T));

    // A socket made in `a` by run_in stays in `a` when used from this thread.
    let socket = a
        .run_in(|| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap())
        .unwrap();
    socket.set_read_timeout(Some(T)).unwrap();
    socket.send_to(b"hello", (b4, 7000)).unwrap();
    let mut buf = [0u8; 16];
    let (n, from) = socket.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello");
    assert_eq!(from.ip(), b4);
    // The calling thread is still in the root namespace: it has no 10.66.1.0/24 route
    // to b (this only reads, it changes nothing).
    assert!(
        !std::fs::read_to_string("/proc/self/net/route")
            .unwrap()
            .contains("va")
    );
    // run_in sees the namespace's own interfaces.
    let names = a
        .run_in(|| std::fs::read_to_string("/proc/thread-self/net/dev").unwrap())
        .unwrap();
    assert!(names.contains("va:"), "{names}");

    // Sysctls are per namespace and only net.* is accepted.
    a.sysctl(&[("net.ipv4.ip_forward", "1")]).unwrap();
    assert_eq!(
        a.exec_ok("sysctl", ["-n", "net.ipv4.ip_forward"])
            .unwrap()
            .trim(),
        "1"
    );
    assert!(a.sysctl(&[("kernel.panic", "1")]).is_err());
    drop(socket);
}

#[test]
fn spawned_processes_are_tracked_and_killed() {
    if !common::capable() {
        return;
    }
    let ns = Netns::create(&unique_name("spawn")).unwrap();
    // A shell with a child of its own: both die by process group.
    let pid = ns.spawn("sh", ["-c", "sleep 30 & sleep 30"]).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(common::group_members(pid).len() >= 2);
    assert_eq!(ns.spawned(), [pid]);
    let in_ns = ns.pids().unwrap();
    assert!(in_ns.contains(&pid), "{in_ns:?}");
    assert!(ns.kill(pid).unwrap());
    assert!(!ns.kill(pid).unwrap());
    assert!(common::group_gone(pid, Duration::from_secs(1)));
    assert!(ns.spawned().is_empty());
    // Not ours: untouched.
    assert!(!ns.kill(std::process::id()).unwrap());

    let out = ns.exec("ip", ["-o", "link"]).unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("lo:"));
    assert!(ns.exec_ok("false", std::iter::empty::<&str>()).is_err());
}

#[test]
fn names_are_checked_and_never_adopted() {
    if !common::capable() {
        return;
    }
    assert!(Netns::create("../etc").is_err());
    assert!(Netns::create("").is_err());
    let name = unique_name("dup");
    let ns = Netns::create(&name).unwrap();
    // A second create of the same name fails and must not delete the first.
    assert!(Netns::create(&name).is_err());
    assert!(common::netns_names().contains(&name));
    drop(ns);
    assert!(!common::netns_names().contains(&name));
}
