//! Set-element batches sent over netlink, against the real kernel, in throwaway network
//! namespaces (`bh-nl-<pid>-…`, deleted on drop). Needs root, `ip` and `nft`; otherwise
//! every test passes after printing why it was skipped.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use bulkhead_dataplane::netlink::{ElementChange, ElementOp, Elements, NfSocket, SendError};
use bulkhead_dataplane::table::{Chain, Hook, Set, SetKind, VerdictMap};
use bulkhead_dataplane::{CommandRunner, Dataplane, Table};
use bulkhead_netns::{Netns, NodeSandbox, Service, nft, tcp_connect};

mod common;
use common::capable;

fn name(tag: &str) -> String {
    format!("bh-nl-{}-{tag}", std::process::id())
}

fn list_table(ns: &Netns) -> String {
    ns.exec_ok("nft", ["list", "table", "inet", "bulkhead"])
        .expect("nft list table")
}

fn list_set(ns: &Netns, set: &str) -> String {
    ns.exec_ok("nft", ["list", "set", "inet", "bulkhead", set])
        .expect("nft list set")
}

fn set(kind: SetKind, elements: &[&str]) -> Set {
    Set {
        kind,
        elements: elements.iter().map(|e| e.to_string()).collect(),
    }
}

/// Every kind of set and map the renderer makes, with the given elements.
#[allow(clippy::too_many_arguments)]
fn table(
    s4: &[&str],
    s4_empty: &[&str],
    s4_top: &[&str],
    s6: &[&str],
    n4: &[&str],
    n6: &[&str],
    known: &[&str],
    from: &[(&str, &str)],
) -> Table {
    let mut t = Table::default();
    t.sets.insert("s4_a".into(), set(SetKind::Ipv4, s4));
    t.sets.insert("s4_e".into(), set(SetKind::Ipv4, s4_empty));
    t.sets.insert("s4_top".into(), set(SetKind::Ipv4, s4_top));
    t.sets.insert("s6_a".into(), set(SetKind::Ipv6, s6));
    t.sets.insert("n4_a".into(), set(SetKind::Ipv4Port, n4));
    t.sets.insert("n6_a".into(), set(SetKind::Ipv6Port, n6));
    t.sets
        .insert("wl_known".into(), set(SetKind::Ifname, known));
    t.maps.insert(
        "wl_from".into(),
        VerdictMap {
            elements: from
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        },
    );
    for c in ["w.cali1.out", "w.cali2.out"] {
        t.chains.insert(
            c.into(),
            Chain {
                hook: None,
                rules: vec!["return".into()],
            },
        );
    }
    t
}

/// `t` with the address (hash) sets `h4_a` and `h6_a` holding `h4` and `h6`.
fn with_hosts(mut t: Table, h4: &[&str], h6: &[&str]) -> Table {
    t.sets.insert("h4_a".into(), set(SetKind::Ipv4Hosts, h4));
    t.sets.insert("h6_a".into(), set(SetKind::Ipv6Hosts, h6));
    t
}

/// Element-only diffs applied over netlink leave the kernel exactly as a fresh `nft -f`
/// load of the same table: `nft list table` prints the same text in both namespaces.
#[test]
fn netlink_element_diffs_list_exactly_like_a_fresh_nft_load() {
    if !capable() {
        return;
    }
    let a = Netns::create(&name("eq-a")).expect("namespace a");
    let b = Netns::create(&name("eq-b")).expect("namespace b");
    let steps = [
        with_hosts(table(&[], &[], &[], &[], &[], &[], &[], &[]), &[], &[]),
        // Additions of every kind, first additions to empty interval sets among them.
        with_hosts(
            table(
                &["10.65.0.1/32", "10.65.1.0/24"],
                &["10.70.0.0/16"],
                &["255.255.255.0/24", "10.0.0.0/8"],
                &["fd00::/64", "fd00:1::5/128"],
                &["10.65.0.1 . tcp . 8080", "10.65.0.2 . udp . 53"],
                &["fd00::1 . tcp . 80"],
                &["\"cali1\"", "\"cali2\""],
                &[("\"cali1\"", "jump w.cali1.out")],
            ),
            &["10.65.0.1", "10.65.0.2", "10.65.7.9"],
            &["fd00::1", "fd00:1::5"],
        ),
        // Removals, a prefix replaced by a wider one in the same batch, a map value
        // changed (jump to goto), an interval set emptied.
        with_hosts(
            table(
                &["10.65.0.0/23"],
                &[],
                &["255.255.255.0/24"],
                &["fd00:1::5/128"],
                &["10.65.0.1 . tcp . 8080"],
                &[],
                &["\"cali2\""],
                // `goto` is what the renderer's interface maps hold.
                &[
                    ("\"cali1\"", "goto w.cali2.out"),
                    ("\"cali2\"", "jump w.cali2.out"),
                ],
            ),
            &["10.65.0.2", "10.65.0.3"],
            &[],
        ),
        // The emptied set filled again (nft's zero-key interval end sent a second time),
        // and a prefix that starts at the zero key.
        with_hosts(
            table(
                &["10.65.0.0/23", "0.0.0.0/5"],
                &["10.71.0.0/16"],
                &[],
                &["::/1"],
                &[],
                &["fd00::1 . 132 . 9"],
                &[],
                &[],
            ),
            &["0.0.0.0"],
            &["::"],
        ),
        with_hosts(table(&[], &[], &[], &[], &[], &[], &[], &[]), &[], &[]),
    ];
    let mut dp = Dataplane::new(CommandRunner::in_netns(a.name()));
    for (i, t) in steps.iter().enumerate() {
        let applied = dp.apply(t.clone()).expect("applies").expect("a change");
        assert_eq!(applied.netlink, i > 0, "step {i}: {applied:?}");
        nft::apply(&b, &t.load_script()).expect("nft load in b");
        assert_eq!(list_table(&a), list_table(&b), "step {i}");
    }
    // And the listing shows what step 1 added, as nft prints it.
    dp.apply(steps[1].clone()).expect("applies");
    let s4 = list_set(&a, "s4_a");
    assert!(
        s4.contains("10.65.0.1") && s4.contains("10.65.1.0/24"),
        "{s4}"
    );
    let top = list_set(&a, "s4_top");
    assert!(top.contains("255.255.255.0/24"), "{top}");
    let h4 = list_set(&a, "h4_a");
    assert!(
        ["10.65.0.1,", "10.65.0.2,", "10.65.7.9 }"]
            .iter()
            .all(|e| h4.contains(e)),
        "{h4}"
    );
    let vmap = list_set_or_map(&a, "wl_from");
    assert!(vmap.contains("\"cali1\" : jump w.cali1.out"), "{vmap}");
}

fn list_set_or_map(ns: &Netns, map: &str) -> String {
    ns.exec_ok("nft", ["list", "map", "inet", "bulkhead", map])
        .expect("nft list map")
}

/// A batch with one bad message changes nothing, and the error names the message and
/// the element.
#[test]
fn a_refused_batch_changes_nothing_and_names_the_culprit() {
    if !capable() {
        return;
    }
    let ns = Netns::create(&name("refuse")).expect("namespace");
    let t = table(&["10.65.1.0/24"], &[], &[], &[], &[], &[], &[], &[]);
    nft::apply(&ns, &t.load_script()).expect("load");
    let mut socket = NfSocket::open_in(ns.path()).expect("socket in the namespace");
    let prefixes = |p: &[&str]| Elements::Prefixes {
        prefixes: p.iter().map(|p| p.parse().expect("prefix")).collect(),
        set_was_empty: false,
    };
    let batch = [
        ElementChange {
            op: ElementOp::Add,
            set: "s4_a".into(),
            elements: prefixes(&["10.65.9.0/24"]),
        },
        ElementChange {
            op: ElementOp::Delete,
            set: "s4_a".into(),
            elements: prefixes(&["10.65.1.0/24", "10.99.0.0/16"]),
        },
    ];
    let err = socket.send(&batch).expect_err("10.99.0.0/16 is not there");
    let text = err.to_string();
    println!("{text}");
    match &err {
        SendError::Rejected { errno, culprit, .. } => {
            assert_eq!(*errno, nix::errno::Errno::ENOENT, "{text}");
            assert!(
                culprit.starts_with("DELSETELEM s4_a element 10.99.0.0/16 (message 2 of 2"),
                "{text}"
            );
        }
        other => panic!("{other:?}"),
    }
    let listed = list_set(&ns, "s4_a");
    assert!(
        listed.contains("10.65.1.0/24") && !listed.contains("10.65.9.0"),
        "all or nothing:\n{listed}"
    );
    // A missing set is refused too, by name.
    let missing = [ElementChange {
        op: ElementOp::Add,
        set: "s4_nosuch".into(),
        elements: prefixes(&["10.1.0.0/16"]),
    }];
    let err = socket.send(&missing).expect_err("no such set");
    assert!(err.to_string().contains("NEWSETELEM s4_nosuch"), "{err}");
    // The same socket goes on working.
    socket.send(&batch[..1]).expect("a good batch");
    assert!(list_set(&ns, "s4_a").contains("10.65.9.0/24"));
}

/// If the namespace is replaced by a new one of the same name (the table gone), the
/// runner notices, the netlink batch fails, nft fails too, and the next apply reloads.
#[test]
fn a_recreated_namespace_gets_a_new_socket_and_a_full_reload() {
    if !capable() {
        return;
    }
    let ns_name = name("recreate");
    let ns = Netns::create(&ns_name).expect("namespace");
    let mut dp = Dataplane::new(CommandRunner::in_netns(&ns_name));
    let t0 = table(&[], &[], &[], &[], &[], &[], &[], &[]);
    let t1 = table(&["10.65.0.1/32"], &[], &[], &[], &[], &[], &[], &[]);
    let t2 = table(&["10.65.0.2/32"], &[], &[], &[], &[], &[], &[], &[]);
    dp.apply(t0).expect("load");
    assert!(dp.apply(t1).expect("ok").expect("applied").netlink);
    drop(ns);
    let ns = Netns::create(&ns_name).expect("namespace again");
    assert!(dp.apply(t2.clone()).is_err(), "the table is gone");
    let applied = dp.apply(t2).expect("ok").expect("applied");
    assert!(applied.full);
    assert!(list_set(&ns, "s4_a").contains("10.65.0.2"));
}

/// Real packets: a TCP connection allowed only by a set element starts to pass once the
/// element is added over netlink, and stops when it is removed.
#[test]
fn a_set_element_added_over_netlink_lets_a_connection_through() {
    if !capable() {
        return;
    }
    let node = NodeSandbox::new(&name("probe")).expect("node sandbox");
    let a = node
        .add_workload("a", Ipv4Addr::new(10, 65, 0, 1), None)
        .expect("workload a");
    let b = node
        .add_workload("b", Ipv4Addr::new(10, 65, 0, 2), None)
        .expect("workload b");
    b.netns().serve(&[Service::Tcp(8080)]).expect("server");
    let target = IpAddr::V4(b.ipv4());
    let timeout = Duration::from_millis(500);
    assert!(
        tcp_connect(a.netns(), target, 8080, timeout),
        "open without a table"
    );

    let with = |allowed: &[&str]| {
        let mut t = Table::default();
        t.sets
            .insert("s4_allow".into(), set(SetKind::Ipv4, allowed));
        t.chains.insert(
            "forward".into(),
            Chain {
                hook: Some(Hook::Forward),
                rules: vec![
                    "ct state established,related accept".into(),
                    "ip saddr @s4_allow tcp dport 8080 accept".into(),
                    "drop".into(),
                ],
            },
        );
        t
    };
    let mut dp = Dataplane::new(CommandRunner::in_netns(node.name()));
    dp.apply(with(&[])).expect("load");
    assert!(!tcp_connect(a.netns(), target, 8080, timeout), "denied");

    let applied = dp
        .apply(with(&["10.65.0.1/32"]))
        .expect("ok")
        .expect("applied");
    assert!(applied.netlink, "{applied:?}");
    assert!(list_set(node.netns(), "s4_allow").contains("10.65.0.1"));
    assert!(
        tcp_connect(a.netns(), target, 8080, timeout),
        "allowed by the element"
    );

    let applied = dp.apply(with(&[])).expect("ok").expect("applied");
    assert!(applied.netlink);
    assert!(
        !tcp_connect(a.netns(), target, 8080, timeout),
        "denied again"
    );
}

#[test]
fn the_generation_moves_with_every_commit_and_only_then() {
    if !capable() {
        return;
    }
    let ns = Netns::create(&name("gen")).expect("namespace");
    let mut socket =
        NfSocket::open_in(&std::path::Path::new("/run/netns").join(ns.name())).expect("socket");
    let g0 = socket.generation().expect("generation");
    assert_eq!(
        socket.generation().expect("generation"),
        g0,
        "nothing committed"
    );
    ns.exec_ok("nft", ["add", "table", "inet", "t"])
        .expect("a commit");
    let g1 = socket.generation().expect("generation");
    assert_ne!(g1, g0);
    ns.exec_ok("nft", ["list", "ruleset"]).expect("a read");
    assert_eq!(
        socket.generation().expect("generation"),
        g1,
        "reads commit nothing"
    );
}
