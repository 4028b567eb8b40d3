//! Everything a sandbox made is gone after drop, also when a test closure panics.
//! Its own test binary (own process, own name prefix). Needs root; skips otherwise.

mod common;

use std::net::Ipv4Addr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bulkhead_netns::{Endpoint, NodeSandbox, Service, process_prefix, unique_name};

/// A node with one workload running a process tree and a server, and a process in the
/// node namespace too.
fn build(name: &str, spawned: &AtomicU32) -> (NodeSandbox, Endpoint) {
    let node = NodeSandbox::new(name).unwrap();
    let w = node
        .add_workload(
            "w1",
            Ipv4Addr::new(10, 65, 9, 1),
            Some("fd65::9:1".parse().unwrap()),
        )
        .unwrap();
    let pid = w
        .netns()
        .spawn("sh", ["-c", "sleep 30 & sleep 30"])
        .unwrap();
    spawned.store(pid, Ordering::SeqCst);
    w.netns()
        .serve(&[Service::Tcp(80), Service::Udp(53)])
        .unwrap();
    node.netns().spawn("sleep", ["30"]).unwrap();
    (node, w)
}

#[test]
fn nothing_is_left_after_drop_or_panic() {
    if !common::capable() {
        return;
    }
    // 1. Plain drop.
    let name = unique_name("clean");
    let pid = AtomicU32::new(0);
    {
        let (node, _w1) = build(&name, &pid);
        let w2 = node
            .add_workload("w2", Ipv4Addr::new(10, 65, 9, 2), None)
            .unwrap();
        w2.netns().serve(&[Service::Tcp(80)]).unwrap();
        assert_eq!(
            common::leftovers(&name).len(),
            3,
            "{:?}",
            common::netns_names()
        );
    }
    assert!(
        common::leftovers(&name).is_empty(),
        "{:?}",
        common::leftovers(&name)
    );
    let pid = pid.load(Ordering::SeqCst);
    assert!(!common::process_exists(pid));
    assert!(common::group_gone(pid, Duration::from_secs(1)));

    // 2. A panic while everything is alive.
    let name = unique_name("panic");
    let pid = AtomicU32::new(0);
    let result = catch_unwind(AssertUnwindSafe(|| {
        let (node, _w1) = build(&name, &pid);
        let _w2 = node
            .add_workload("w2", Ipv4Addr::new(10, 65, 9, 2), None)
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        panic!("boom inside a test closure");
    }));
    assert!(result.is_err());
    assert!(
        common::leftovers(&name).is_empty(),
        "{:?}",
        common::leftovers(&name)
    );
    let pid = pid.load(Ordering::SeqCst);
    assert!(common::group_gone(pid, Duration::from_secs(1)));

    // 3. A panic inside run_in reaches the caller, and the namespace still goes.
    let name = unique_name("runin");
    let result = catch_unwind(AssertUnwindSafe(|| {
        let ns = bulkhead_netns::Netns::create(&name).unwrap();
        let _: () = ns.run_in(|| panic!("boom inside the namespace")).unwrap();
    }));
    assert!(result.is_err());
    assert!(common::leftovers(&name).is_empty());

    // 4. Nothing of this process is left at all.
    assert!(
        common::leftovers(&process_prefix()).is_empty(),
        "{:?}",
        common::leftovers(&process_prefix())
    );
}
